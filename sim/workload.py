"""Vectorized generation of a workload's event stream (numpy, no per-event Python).

A caller's objects (a vmalloc area, a module, a BPF JIT image, a secretmem file, ...)
arrive as a Poisson process at `rate_per_s` (plus `initial` objects alive at t = 0);
each object is `n` calls of alloc_pages(order) with one order drawn from `order_mix`,
all freed together after the object's lifetime.  Background callers fill their `share`
of `target_utilisation` x managed pages before t = 0 (the fill phase, at t in [-1, 0))
and keep it in steady state (arrival rate = population / mean lifetime).

The result is a table of allocations sorted by allocation time and an event list of
(time, code) sorted by time, code = 2 * allocation id (+1 for the free).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import CallerConfig, Dist, WorkloadConfig
from .constants import MIGRATETYPES, PAGE_SIZE

ON_ALLOC_CODES = {"none": 0, "ro": 1, "np": 2, "pks": 3}
ON_FREE_CODES = {"none": 0, "reset": 1, "default": 2}

# per-allocation flag bits (a_flags)
AF_ACTION = 1  # apply the caller's on_alloc action to this allocation
AF_RECLAIMABLE = 2  # kswapd may free it early
AF_UNMAPPED = 4  # __GFP_UNMAPPED user: allocated through the policy


def pack_info(order, caller, cpu, flags):
    """One int64 per allocation: order (4 bits) | caller (8) | cpu (12) | flags (8)."""
    return (order.astype(np.int64) | (caller.astype(np.int64) << 4) | (cpu.astype(np.int64) << 12)
            | (flags.astype(np.int64) << 24))


@dataclass
class EventStream:
    """The allocations (sorted by time) and the events of one run. Each event carries
    its allocation's packed info, so the loop reads the event arrays in order and
    touches per-allocation memory (a_pfn) only once per event."""

    a_info: np.ndarray  # int64 per allocation: pack_info()
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
        return (self.a_info & 15).astype(np.int8)

    @property
    def a_caller(self) -> np.ndarray:
        return ((self.a_info >> 4) & 255).astype(np.uint8)

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


def _objects(c: CallerConfig, rng: np.random.Generator, n: int):
    """Draw n objects: (order, allocations per object)."""
    w = np.asarray(c.order_mix, dtype=np.float64)
    orders = np.flatnonzero(w > 0)
    order = rng.choice(orders, size=n, p=w[orders] / w.sum()) if orders.size > 1 else np.full(n, orders[0])
    if c.size_bytes is not None:
        size = np.maximum(draw(c.size_bytes, rng, n), 1.0)
        nallocs = np.ceil(size / (PAGE_SIZE << order)).astype(np.int64)
    else:
        nallocs = np.maximum(np.rint(draw(c.allocs, rng, n)), 1).astype(np.int64)
    return order, nallocs


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


def generate(wl: WorkloadConfig, managed_pages: int, ncpus: int, seed: int) -> EventStream:
    rng = np.random.default_rng(seed)
    duration = float(wl.duration_s)
    names = list(wl.callers)
    cols = {k: [] for k in ("t", "life", "order", "n", "caller", "cpu", "act")}

    for ci, name in enumerate(names):
        c = wl.callers[name]
        crng = np.random.default_rng([seed, ci + 1])  # one stream per caller: adding a caller keeps the others
        if c.background:
            target = int(c.share * wl.target_utilisation * managed_pages)
            o0, k0 = _background_population(c, crng, target)
            n0 = o0.size
            mean_life = dist_mean(c.lifetime_s)
            rate = n0 / mean_life if math.isfinite(mean_life) and mean_life > 0 else 0.0
        else:
            n0 = int(c.initial)
            o0, k0 = _objects(c, crng, n0)
            rate = float(c.rate_per_s)
        n1 = int(crng.poisson(rate * duration)) if rate > 0 and duration > 0 else 0
        o1, k1 = _objects(c, crng, n1)
        if c.at_s is not None and not c.background:
            t0 = np.full(n0, float(c.at_s))  # a one-shot event
        else:
            t0 = -1.0 + crng.random(n0)  # fill phase; shuffled across callers by the sort below
        t1 = np.sort(crng.random(n1) * duration)
        order = np.concatenate((o0, o1))
        nalloc = np.concatenate((k0, k1))
        cols["t"].append(np.concatenate((t0, t1)))
        cols["life"].append(draw(c.lifetime_s, crng, n0 + n1))
        cols["order"].append(order)
        cols["n"].append(nalloc)
        cols["caller"].append(np.full(n0 + n1, ci, np.int64))
        cols["cpu"].append(crng.integers(0, ncpus, n0 + n1))
        cols["act"].append(np.full(n0 + n1, c.on_alloc_fraction))

    if names and sum(a.size for a in cols["t"]):
        obj = {k: np.concatenate(v) for k, v in cols.items()}
    else:
        obj = {k: np.zeros(0) for k in cols}
    # objects -> allocations (np.repeat by allocations per object)
    nalloc = obj["n"].astype(np.int64)
    rep = lambda a: np.repeat(a, nalloc)  # noqa: E731
    t_alloc = rep(obj["t"]).astype(np.float64)
    t_free = t_alloc + np.maximum(rep(obj["life"]), 1e-9)
    caller = rep(obj["caller"]).astype(np.int64)
    order = rep(obj["order"]).astype(np.int8)
    cpu = rep(obj["cpu"]).astype(np.int16)
    act = rng.random(t_alloc.size) < rep(obj["act"])

    # allocation ids in time order (stable: an object's allocations stay together)
    idx = np.argsort(t_alloc)  # ties: one object's allocations; any fixed order is fine
    t_alloc, t_free, caller, order, cpu, act = (a[idx] for a in (t_alloc, t_free, caller, order, cpu, act))

    c_mt = np.array([MIGRATETYPES[wl.callers[n].migratetype] for n in names] or [0], np.uint8)
    flags_of = np.array([(AF_RECLAIMABLE if wl.callers[n].reclaimable else 0)
                         | (AF_UNMAPPED if wl.callers[n].unmapped else 0) for n in names] or [0], np.uint8)
    a_flags = flags_of[caller] | np.where(act, AF_ACTION, 0).astype(np.uint8) if caller.size \
        else np.zeros(0, np.uint8)
    a_info = pack_info(order, caller, cpu, a_flags)

    ids = np.arange(t_alloc.size, dtype=np.int64)
    freed = t_free < duration
    ev_time = np.concatenate((t_alloc, t_free[freed]))
    ev_code = np.concatenate((ids * 2, ids[freed] * 2 + 1))
    order_ev = np.argsort(ev_time)  # a free never ties with its own allocation (lifetime > 0)
    ev_code = ev_code[order_ev]
    return EventStream(
        a_info=a_info, ev_time=ev_time[order_ev], ev_code=ev_code, ev_info=a_info[ev_code >> 1],
        caller_names=names, c_mt=c_mt,
        c_on_alloc=np.array([ON_ALLOC_CODES[wl.callers[n].on_alloc] for n in names] or [0], np.uint8),
        c_on_free=np.array([ON_FREE_CODES[wl.callers[n].on_free] for n in names] or [0], np.uint8),
        duration_s=duration,
    )
