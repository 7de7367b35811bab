"""A run's peak memory, estimated from its config before any work.

    state   bytes per simulated 4K page (state.PAGE_RECORD) + boot temporaries
    live    the workload is streamed a window at a time (workload.py): per live allocation a
            slot, its free-stack and reclaim-FIFO entries and growth headroom (~40 B), per live
            object a calendar entry; live objects = the fill population + rate x mean lifetime
            (at most rate x duration_s)
    window  the largest window's events: the fill phase (every object alive at boot at once)
            or window_s of arrivals and frees; ~60 B per event (event arrays 24 B, the window's
            object columns and sorts)
    ahead   with overlap (simulate()'s default on 2+ CPUs, never in a sweep's tasks): the next
            window built and the one after drawn while the loop runs, ~110 B per event of a
            steady window (64 GiB production_busy 1 h: 1,195 MiB peak without, 1,403 with)
    base    the interpreter, numpy, numba's compiled model, polars

Memory does not grow with duration_s beyond the live objects (64 GiB production_busy: 1.0 GB
peak at 600 s, the same at 1 h; benchmarks/bench_uptime.py). `estimate()` is the one place the
formula lives; `check()` refuses a run whose estimate exceeds a limit, naming the keys that
dominate it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .config import ConfigError, SimConfig

STATE_BYTES_PER_PAGE = 18  # 16 per page record (with the owner for migration) + boot temporaries
BYTES_PER_LIVE_ALLOC = 40  # slot (pfn, word, chain, generation), free stack, reclaim FIFO, x2 growth headroom
BYTES_PER_LIVE_OBJECT = 48  # calendar entry (free time, id, first slot, count), x2 headroom
BYTES_PER_WINDOW_EVENT = 60  # event arrays + the window's object columns, sorts and gathers
BYTES_PER_AHEAD_EVENT = 110  # overlap: one more window's events, draws and buffers (measured)
BASE_BYTES = 250 << 20  # interpreter + numpy + numba model + polars (a 1 GiB run peaks at 212 MiB)
PAGE_SIZE = 4096


@dataclass
class Estimate:
    total: int
    parts: dict = field(default_factory=dict)  # what -> bytes, largest first

    def dominant(self, n: int = 2) -> str:
        return "; ".join(f"{k}: {fmt_bytes(v)}" for k, v in list(self.parts.items())[:n])


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def parse_bytes(text) -> int:
    """'8G', '512M', '1.5GiB', 1073741824 -> bytes."""
    if isinstance(text, (int, float)):
        return int(text)
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(s[-1:], 1)
    return int(float(s[:-1] if s[-1:] in "KMGT" else s) * mult)


def _caller_load(c, duration: float, window: float, managed_pages: int, utilisation: float):
    """(live objects, live allocations, largest window's events, a steady window's events) of
    one caller."""
    from .workload import dist_mean

    w = [max(float(x), 0.0) for x in c.order_mix]
    tot = sum(w) or 1.0
    mean_pages = sum(wi * (1 << o) for o, wi in enumerate(w)) / tot  # pages per allocation
    if c.size_bytes is not None:
        allocs = max(1.0, dist_mean(c.size_bytes) / (PAGE_SIZE * mean_pages))
    else:
        allocs = max(1.0, dist_mean(c.allocs))
    life = dist_mean(c.lifetime_s)
    if c.background:
        n0 = c.share * utilisation * managed_pages / max(allocs * mean_pages, 1.0)
        rate = n0 / life if math.isfinite(life) and life > 0 else 0.0
    else:
        n0, rate = float(c.initial), float(c.rate_per_s)
    live = n0 + rate * min(duration, life if math.isfinite(life) else duration)
    per_object = allocs * (1 + 2 * c.load_copy * mean_pages)  # its allocations; its copy's pages, in and out
    steady = 2 * rate * min(window, duration) * per_object
    return live, live * allocs, max(n0 * per_object, steady), steady


def estimate(sc: SimConfig, overlap: bool = False) -> Estimate:
    """Peak resident memory of one run of `sc`, in bytes, with the contribution of each key;
    `overlap`: the run builds its next window next to the loop (simulate(overlap=True))."""
    pages = sc.machine.mem_mib * 256
    parts = {f"machine.mem_mib={sc.machine.mem_mib} (state)": pages * STATE_BYTES_PER_PAGE}
    duration = float(sc.workload.duration_s)
    for name, c in sc.workload.callers.items():
        objects, allocs, window_events, steady = _caller_load(c, duration, float(sc.window_s), pages,
                                                              sc.workload.target_utilisation)
        what = (f"workload.callers.{name}.share={c.share:g} x machine.mem_mib" if c.background else
                f"workload.callers.{name}.rate_per_s={c.rate_per_s:g} x lifetime"
                + (f" + initial={c.initial}" if c.initial else ""))
        parts[f"{what} ({allocs:.3g} live allocations)"] = int(allocs * BYTES_PER_LIVE_ALLOC
                                                                + objects * BYTES_PER_LIVE_OBJECT
                                                                + window_events * BYTES_PER_WINDOW_EVENT
                                                                + overlap * steady * BYTES_PER_AHEAD_EVENT)
    parts["base (interpreter, numba, libraries)"] = BASE_BYTES
    parts = dict(sorted(parts.items(), key=lambda kv: -kv[1]))
    return Estimate(int(sum(parts.values())), parts)


def node_memory() -> int:
    """Physical memory of this machine (cgroup limit if lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            v = f.read().strip()
        if v != "max":
            total = min(total, int(v))
    except OSError:
        pass
    return total


def check(sc: SimConfig, limit: int, what: str, overlap: bool = False) -> Estimate:
    """Raise ConfigError naming the dominant key (and the next one) when the estimate exceeds
    `limit` bytes."""
    est = estimate(sc, overlap)
    if est.total > limit:
        label = next((k for k in est.parts if "=" in k), "")
        key, _, rest = label.partition("=")
        raise ConfigError(key, rest.split(" ")[0], f"a run that fits in {fmt_bytes(limit)} ({what}); this one "
                                                   f"needs about {fmt_bytes(est.total)}: {est.dominant()}")
    return est


def limit_from_env(default: int | None = None) -> tuple[int, str]:
    """The per-run limit: $DMFRAG_MAX_RUN_MEMORY (e.g. 8G) if set, else this node's memory."""
    env = os.environ.get("DMFRAG_MAX_RUN_MEMORY")
    if env:
        return parse_bytes(env), "DMFRAG_MAX_RUN_MEMORY"
    return (default if default is not None else node_memory()), "this node's memory"
