"""Vectorized generation of a workload's event stream (numpy, no per-event Python).

A caller's objects (a vmalloc area, a module, a BPF JIT image, a secretmem file, ...)
arrive as a Poisson process at `rate_per_s` (plus `initial` objects alive at t = 0);
each object is `n` calls of alloc_pages(order) with one order drawn from `order_mix`,
all freed together after the object's lifetime.  Background callers fill their `share`
of `target_utilisation` x managed pages before t = 0 (the fill phase, at t in [-1, 0))
and keep it in steady state (arrival rate = population / mean lifetime).

The result is a table of allocations sorted by allocation time and an event list of
(time, code) sorted by time, code = 2 * allocation id (+1 for the free).  Everything is
sorted per object (an object's allocations share their times) and expanded at the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import hugemem
from .config import CallerConfig, Dist, WorkloadConfig
from .constants import BPF_PROG_CHUNK_SIZE, BPF_PROG_PACK_SIZE, MIGRATETYPES, PAGE_SIZE
from .jit import njit, prefetch
from .layout import (
    AF_ACTION, AF_NO_PACK, AF_RECLAIMABLE, AF_UNMAPPED, ON_ALLOC, ON_FREE, decode, ev_chunks, ev_order,
    field_mask, pack_event_word,
)
from .radix import argsort_stable

PF_AHEAD = 16  # frees whose a_info is prefetched ahead in expand_events


@njit
def alloc_chunks(info):
    """64-byte chunks an allocation's image needs (bpf_prog_pack_alloc's nbits): the image's
    part in this allocation, or the whole allocation (PAGE_SIZE << order)."""
    c = ev_chunks(info)
    return c if c else (PAGE_SIZE // BPF_PROG_CHUNK_SIZE) << ev_order(info)


@dataclass
class EventStream:
    """The allocations (sorted by time) and the events of one run. Each event carries
    its allocation's packed info, so the loop reads the event arrays in order and
    touches per-allocation memory (a_pfn) only once per event."""

    a_info: np.ndarray  # int64 per allocation: layout.pack_event_word()
    ev_time: np.ndarray  # float64, seconds (fill phase at t < 0)
    ev_code: np.ndarray  # int64: 2 * allocation id + is_free
    ev_info: np.ndarray  # int64: a_info of the event's allocation
    caller_names: list[str]
    c_mt: np.ndarray  # uint8 per caller: migratetype
    c_on_alloc: np.ndarray  # uint8 per caller
    c_on_free: np.ndarray  # uint8 per caller
    duration_s: float

    @property
    def n_allocs(self) -> int:
        return int(self.a_info.size)

    @property
    def a_order(self) -> np.ndarray:
        return decode(self.a_info, "order").astype(np.int8)

    @property
    def a_caller(self) -> np.ndarray:
        return decode(self.a_info, "caller").astype(np.uint8)

    @property
    def n_events(self) -> int:
        return int(self.ev_time.size)


def draw(d: Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    if d.dist == "fixed":
        return np.full(n, float(d.value))
    if d.dist == "exp":
        return rng.exponential(d.mean, n)
    if d.dist == "lognormal":
        return d.median * np.exp(d.sigma * rng.standard_normal(n))
    if d.dist == "uniform":
        return rng.uniform(d.low, d.high, n)
    if d.dist == "forever":
        return np.full(n, np.inf)
    raise ValueError(f"unknown distribution {d.dist!r}")


def dist_mean(d: Dist) -> float:
    return {
        "fixed": lambda: d.value,
        "exp": lambda: d.mean,
        "lognormal": lambda: d.median * math.exp(d.sigma ** 2 / 2),
        "uniform": lambda: (d.low + d.high) / 2,
        "forever": lambda: math.inf,
    }[d.dist]()


def _objects(c: CallerConfig, rng: np.random.Generator, n: int, with_size: bool = False):
    """Draw n objects: (order, allocations per object[, size in bytes or -1])."""
    w = np.asarray(c.order_mix, dtype=np.float64)
    orders = np.flatnonzero(w > 0)
    order = rng.choice(orders, size=n, p=w[orders] / w.sum()) if orders.size > 1 else np.full(n, orders[0])
    if c.size_bytes is not None:
        size = np.ceil(np.maximum(draw(c.size_bytes, rng, n), 1.0)).astype(np.int64)
        nallocs = -(-size // (PAGE_SIZE << order))
    else:
        size = np.full(n, -1, np.int64)
        nallocs = np.maximum(np.rint(draw(c.allocs, rng, n)), 1).astype(np.int64)
    return (order, nallocs, size) if with_size else (order, nallocs)


def image_chunks(order: np.ndarray, nallocs: np.ndarray, size: np.ndarray):
    """Per object: chunks of its last allocation when the image ends inside it (else 0),
    and whether the image is too large for a pack (bpf_prog_pack_alloc: > 2M)."""
    unit = PAGE_SIZE << order
    tail_bytes = np.where(size > 0, size - (nallocs - 1) * unit, unit)
    tail = -(-tail_bytes // BPF_PROG_CHUNK_SIZE)
    tail = np.where(tail < (unit >> 6), tail, 0)
    return tail, np.where(size > 0, size, unit) > BPF_PROG_PACK_SIZE


def _background_population(c: CallerConfig, rng, target_pages: int):
    """Objects whose pages add up to target_pages (drawn in batches, cut at the target)."""
    orders, counts, total = [], [], 0
    batch = 4096
    while total < target_pages:
        o, k = _objects(c, rng, batch)
        pages = k << o
        cum = total + np.cumsum(pages)
        stop = int(np.searchsorted(cum, target_pages)) + 1
        orders.append(o[:stop])
        counts.append(k[:stop])
        total = int(cum[min(stop, batch) - 1])
        batch = min(batch * 4, 1 << 22)
    if not orders:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(orders), np.concatenate(counts)


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + count) for each pair."""
    total = int(counts.sum())
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)


def sorted_uniform(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """n uniform draws on [low, high) already in ascending order, in O(n): the order
    statistics of n uniforms are the normalised partial sums of n + 1 exponentials."""
    s = np.cumsum(rng.exponential(1.0, n + 1))
    return low + (high - low) * (s[:n] / s[n])


@njit
def expand_events(t_obj, n_obj, first_obj, t_fr, n_fr, first_fr, a_info, ev_time, ev_code, ev_info):
    """Merge the objects' allocs (sorted by time) with the freed objects' frees (sorted by
    free time; *_fr are gathered in that order so both streams are read sequentially) and
    write one event per allocation. A free sorts after an alloc at the same time; it never
    ties with its own alloc since lifetimes are > 0."""
    e = 0
    i = 0
    j = 0
    n_alloc_obj, n_free_obj = t_obj.shape[0], t_fr.shape[0]
    while i < n_alloc_obj or j < n_free_obj:
        if j < n_free_obj and (i >= n_alloc_obj or t_fr[j] < t_obj[i]):
            t, a, n, is_free = t_fr[j], first_fr[j], n_fr[j], 1
            if j + PF_AHEAD < n_free_obj:
                prefetch(a_info, first_fr[j + PF_AHEAD])  # the frees' a_info reads are random
            j += 1
        else:
            t, a, n, is_free = t_obj[i], first_obj[i], n_obj[i], 0
            i += 1
        for k in range(n):
            ev_time[e] = t
            ev_code[e] = 2 * (a + k) + is_free
            ev_info[e] = a_info[a + k]
            e += 1


def generate(wl: WorkloadConfig, managed_pages: int, ncpus: int, seed: int) -> EventStream:
    rng = np.random.default_rng(seed)
    duration = float(wl.duration_s)
    names = list(wl.callers)
    c_mt = np.array([MIGRATETYPES[wl.callers[n].migratetype] for n in names] or [0], np.uint8)
    # AF_ACTION only where there is an action: the loop skips the call for the rest
    act_frac = np.array([wl.callers[n].on_alloc_fraction if wl.callers[n].on_alloc != "none" else 0.0
                         for n in names] or [0.0])
    cols = {k: [np.zeros(0, dt)] for k, dt in (("t", float), ("t_free", float), ("n", np.int64), ("info", np.int64))}

    for ci, name in enumerate(names):
        c = wl.callers[name]
        crng = np.random.default_rng([seed, ci + 1])  # one stream per caller: adding a caller keeps the others
        if c.background:
            target = int(c.share * wl.target_utilisation * managed_pages)
            o0, k0 = _background_population(c, crng, target)
            n0 = o0.size
            b0 = np.full(n0, -1, np.int64)
            mean_life = dist_mean(c.lifetime_s)
            rate = n0 / mean_life if math.isfinite(mean_life) and mean_life > 0 else 0.0
        else:
            n0 = int(c.initial)
            o0, k0, b0 = _objects(c, crng, n0, with_size=True)
            rate = float(c.rate_per_s)
        n1 = int(crng.poisson(rate * duration)) if rate > 0 and duration > 0 else 0
        o1, k1, b1 = _objects(c, crng, n1, with_size=True)
        if c.at_s is not None and not c.background:
            t0 = np.full(n0, float(c.at_s))  # a one-shot event
        else:
            t0 = sorted_uniform(crng, n0, c.fill_from - 1.0, c.fill_to - 1.0)  # fill phase, merged with the others below
        t = np.concatenate((t0, sorted_uniform(crng, n1, 0.0, duration)))
        flags = (AF_RECLAIMABLE if c.reclaimable else 0) | (AF_UNMAPPED if c.unmapped else 0)
        order, nalloc = np.concatenate((o0, o1)), np.concatenate((k0, k1))
        tail, no_pack = (0, 0) if c.background else image_chunks(order, nalloc, np.concatenate((b0, b1)))
        cols["t"].append(t)
        cols["t_free"].append(t + np.maximum(draw(c.lifetime_s, crng, t.size), 1e-9))
        cols["n"].append(nalloc)
        cols["info"].append(pack_event_word(order, np.full(t.size, ci), crng.integers(0, ncpus, t.size),
                                            flags | np.where(no_pack, AF_NO_PACK, 0), tail))

    # objects in time order: each caller's objects are sorted already, so the stable
    # (run-merging) sort costs O(n log callers)
    t_obj = np.concatenate(cols["t"])
    by_time = np.argsort(t_obj, kind="stable")
    t_obj, t_free, n_per_obj, o_info = (t_obj[by_time], *(np.concatenate(cols[k])[by_time] for k in ("t_free", "n", "info")))
    first_alloc = np.cumsum(n_per_obj) - n_per_obj  # an object's allocations get consecutive ids

    # allocations, ids in time order (kswapd frees the oldest first = id order); each gets
    # its caller's on_alloc action with probability on_alloc_fraction
    a_info = np.repeat(o_info, n_per_obj)
    # a partial last allocation's chunk count: clear it from the object's other allocations
    split = np.flatnonzero((decode(o_info, "chunks") != 0) & (n_per_obj > 1))
    a_info[ranges(first_alloc[split], n_per_obj[split] - 1)] &= ~field_mask("chunks")
    act = rng.random(a_info.size) < act_frac[decode(a_info, "caller")]
    a_info[act] |= pack_event_word(0, 0, 0, AF_ACTION)
    freed = np.flatnonzero(t_free < duration)
    freed = freed[argsort_stable(t_free[freed])]  # radix: 2x numpy's quicksort argsort, ties in id order
    n_fr = n_per_obj[freed]
    n_ev = a_info.size + int(n_fr.sum())
    ev_time, ev_code, ev_info = (hugemem.zeros(n_ev, dt) for dt in (np.float64, np.int64, np.int64))
    expand_events(t_obj, n_per_obj, first_alloc, t_free[freed], n_fr, first_alloc[freed], a_info,
                  ev_time, ev_code, ev_info)
    return EventStream(
        a_info=a_info, ev_time=ev_time, ev_code=ev_code, ev_info=ev_info,
        caller_names=names, c_mt=c_mt,
        c_on_alloc=np.array([ON_ALLOC.index(wl.callers[n].on_alloc) for n in names] or [0], np.uint8),
        c_on_free=np.array([ON_FREE.index(wl.callers[n].on_free) for n in names] or [0], np.uint8),
        duration_s=duration,
    )
