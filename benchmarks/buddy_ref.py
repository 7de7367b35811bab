"""Speed-of-light reference: a minimal buddy allocator compiled with numba, nothing else.

Random order-0..3 allocations and frees over a 16 GiB zone (4M pages), free lists per
order as doubly linked lists through per-page arrays, merge on free, split on alloc: the
work the simulator's page allocator does per event, without migratetypes, per-CPU lists,
watermarks, the direct map, policies or the workload. `bench_sim.py` measures it in the
same process as the simulator and reports the simulator's end-to-end rate as a ratio to it
(this VM's absolute speed varies by +-15 %).

    .venv/bin/python benchmarks/buddy_ref.py      # events/s of the reference alone
"""
from __future__ import annotations

import time

import numba
import numpy as np

MAX_ORDER = 10
NIL = -1


@numba.njit(cache=True)
def _add(nxt, prv, head, flags, order_of, pfn, order):
    h = head[order]
    nxt[pfn] = h
    prv[pfn] = NIL
    if h != NIL:
        prv[h] = pfn
    head[order] = pfn
    flags[pfn] = 1
    order_of[pfn] = order


@numba.njit(cache=True)
def _del(nxt, prv, head, flags, pfn, order):
    n, p = nxt[pfn], prv[pfn]
    if p != NIL:
        nxt[p] = n
    else:
        head[order] = n
    if n != NIL:
        prv[n] = p
    flags[pfn] = 0


@numba.njit(cache=True)
def run(n_pages, n_events, live_target, seed):
    """n_events alloc/free events; returns pages allocated at the end (a checksum)."""
    np.random.seed(seed)
    nxt = np.full(n_pages, NIL, np.int32)
    prv = np.full(n_pages, NIL, np.int32)
    flags = np.zeros(n_pages, np.uint8)
    order_of = np.zeros(n_pages, np.int8)
    head = np.full(MAX_ORDER + 1, NIL, np.int32)
    for pfn in range(0, n_pages, 1 << MAX_ORDER):
        _add(nxt, prv, head, flags, order_of, pfn, MAX_ORDER)
    live = np.empty(live_target, np.int64)
    live_order = np.empty(live_target, np.int64)
    n_live = 0
    used = 0
    for _ in range(n_events):
        if n_live < live_target and (n_live == 0 or np.random.random() < 0.5):
            order = np.random.randint(0, 4)
            o = order
            while o <= MAX_ORDER and head[o] == NIL:
                o += 1
            if o > MAX_ORDER:
                continue
            pfn = head[o]
            _del(nxt, prv, head, flags, pfn, o)
            while o > order:  # expand
                o -= 1
                _add(nxt, prv, head, flags, order_of, pfn + (1 << o), o)
            live[n_live] = pfn
            live_order[n_live] = order
            n_live += 1
            used += 1 << order
        else:
            i = np.random.randint(0, n_live)
            pfn, order = live[i], live_order[i]
            n_live -= 1
            live[i], live_order[i] = live[n_live], live_order[n_live]
            used -= 1 << order
            while order < MAX_ORDER:  # merge
                buddy = pfn ^ (1 << order)
                if flags[buddy] == 0 or order_of[buddy] != order:
                    break
                _del(nxt, prv, head, flags, buddy, order)
                pfn &= buddy
                order += 1
            _add(nxt, prv, head, flags, order_of, pfn, order)
    return used


def events_per_second(n_pages: int = 4 << 20, n_events: int = 20_000_000) -> float:
    """The reference's rate on a 16 GiB zone (filled to half by small blocks)."""
    run(1 << 14, 1000, 100, 0)  # compile / load the cache
    t0 = time.perf_counter()
    run(n_pages, n_events, n_pages // 8, 1)
    return n_events / (time.perf_counter() - t0)


if __name__ == "__main__":
    print(f"buddy allocator reference: {events_per_second() / 1e6:.1f} M events/s")
