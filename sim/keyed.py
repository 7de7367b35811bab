"""Counter-based random numbers: every draw is a hash of (seed, caller, object, field).

A workload's k-th object of caller c gets the same order, size, lifetime, CPU and arrival
gap whatever else is drawn and however the simulated time is cut into windows, so results
depend only on the config and the seed (never on `window_s`). The hash is splitmix64's
finaliser applied in a chain (Steele, Lea, Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014); 53-bit uniforms from its top bits.
"""
import math
import warnings

import numpy as np

from .jit import njit_inline

# uint64 arithmetic wraps by design (numpy warns about it when run as plain Python)
warnings.filterwarnings("ignore", "overflow encountered in scalar", RuntimeWarning, __name__)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_53 = 1.0 / 9007199254740992.0

# fields of an object's draws
F_ORDER, F_ALLOCS, F_SIZE, F_SIZE2, F_LIFE, F_LIFE2, F_CPU, F_FILL, F_GAP = range(9)
F_ACTION = 16  # + allocation index within the object: the on_alloc_fraction draw

# distribution kinds (config.DISTS order) and the parameter columns of a dist row
D_FIXED, D_EXP, D_LOGNORMAL, D_UNIFORM, D_FOREVER, D_LIST = range(6)
D_NONE = -1  # no distribution (size_bytes unset)
DIST_COLS = ("kind", "value", "mean", "median", "sigma", "low", "high")


@njit_inline
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit_inline
def obj_key(seed, caller, obj):
    """The key of one object: a hash of (seed, caller, object); its fields are drawn from it."""
    h = mix64(np.uint64(seed) + _GOLDEN * np.uint64(caller + 1))
    return mix64(h ^ (np.uint64(obj) * _GOLDEN))


@njit_inline
def field_uniform(h, field):
    """A uniform draw in [0, 1) for one field of the object keyed h."""
    return np.float64(mix64(h + np.uint64(field) * _M1) >> _S11) * _TWO_53


@njit_inline
def uniform(seed, caller, obj, field):
    """A uniform draw in [0, 1) keyed by (seed, caller, object, field)."""
    return field_uniform(obj_key(seed, caller, obj), field)


@njit_inline
def draw(d, h, field):
    """One draw of the distribution row d (DIST_COLS) for the object keyed h: fixed, exp,
    lognormal (Box-Muller from fields `field` and `field + 1`), uniform, forever (+inf)."""
    kind = d[0]
    if kind == D_FIXED:
        return d[1]
    u = field_uniform(h, field)
    if kind == D_EXP:
        return -d[2] * math.log1p(-u)
    if kind == D_LOGNORMAL:
        u2 = field_uniform(h, field + 1)
        z = math.sqrt(-2.0 * math.log1p(-u)) * math.cos(2.0 * math.pi * u2)
        return d[3] * math.exp(d[4] * z)
    if kind == D_UNIFORM:
        return d[5] + (d[6] - d[5]) * u
    return math.inf


@njit_inline
def draw_k(d, values, h, field, k):
    """draw(), or for a `list` row (its length in column 1) the k-th object's value."""
    if d[0] == D_LIST:
        return values[k % np.int64(d[1])]
    return draw(d, h, field)


def dist_row(d) -> np.ndarray:
    """A config Dist (or None) as a float64 row of DIST_COLS."""
    from .config import DISTS

    if d is None:
        return np.array([D_NONE, 0, 0, 0, 0, 0, 0], np.float64)
    value = len(d.values) if d.dist == "list" else d.value
    return np.array([DISTS.index(d.dist), value, d.mean, d.median, d.sigma, d.low, d.high], np.float64)
