"""Pageblock pollution, kept incrementally: how many pageblocks hold unmovable,
reclaimable or unmapped memory (allocated, or in a policy's cache) — 2M that neither
reclaim nor compaction can free — and how many of those are MIGRATE_MOVABLE pageblocks
(fallback steals). `pb_pin[pb]` counts the pinning pages of each pageblock; every change
of a block head's flags, order or migratetype goes through `set_block_head` /
`set_head_flags`, and a pageblock's migratetype through `set_pageblock_mt`. So sampling the time
series reads two counters instead of walking the pages; `invariants.pollution_recount`
recounts both, and every pageblock's pins, from the arrays."""
import numpy as np

from .constants import MIGRATE_MOVABLE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_ALLOC, PG_CACHE
from .jit import njit, njit_inline
from .layout import C_PB_MIXED, C_PB_POLLUTED


@njit_inline
def pin_weight(s, pfn):
    """order + 1 of the block headed at pfn if it pins its pageblock(s), else 0."""
    if (s.pg_flags[pfn] & (PG_ALLOC | PG_CACHE)) != 0 and s.pg_mt[pfn] != MIGRATE_MOVABLE:
        return np.int64(s.pg_order[pfn]) + 1
    return np.int64(0)


@njit
def _pin_pageblock(s, pb, delta):
    old = s.pb_pin[pb]
    new = old + delta
    s.pb_pin[pb] = new
    if (old > 0) != (new > 0):
        sign = 1 if new > 0 else -1
        s.ctr[C_PB_POLLUTED] += sign
        if s.pb_mt[pb] == MIGRATE_MOVABLE:
            s.ctr[C_PB_MIXED] += sign


@njit
def _pin_block(s, pfn, order, sign):
    if order >= PAGEBLOCK_ORDER:
        first = pfn >> PAGEBLOCK_ORDER
        for pb in range(first, first + (1 << (order - PAGEBLOCK_ORDER))):
            _pin_pageblock(s, pb, sign * PAGEBLOCK_NR_PAGES)
    else:
        _pin_pageblock(s, pfn >> PAGEBLOCK_ORDER, sign * (1 << order))


@njit
def _pin_move(s, pfn, before, after):
    if before:
        _pin_block(s, pfn, before - 1, -1)
    if after:
        _pin_block(s, pfn, after - 1, 1)


@njit_inline
def pin_update(s, pfn, before):
    """After a change of the block headed at pfn (`before` = its pin_weight before)."""
    after = pin_weight(s, pfn)
    if after != before:
        _pin_move(s, pfn, before, after)


@njit_inline
def set_block_head(s, pfn, flags, order, mt):
    """Write a block head's flags, order and migratetype, keeping pb_pin and the counters."""
    before = pin_weight(s, pfn)
    s.pg_flags[pfn] = flags
    s.pg_order[pfn] = order
    s.pg_mt[pfn] = mt
    pin_update(s, pfn, before)


@njit_inline
def set_head_flags(s, pfn, flags):
    """Write a block head's flags only (its order and migratetype stay)."""
    before = pin_weight(s, pfn)
    s.pg_flags[pfn] = flags
    pin_update(s, pfn, before)


@njit
def set_pageblock_mt(s, pb, mt):
    """set_pageblock_migratetype, keeping pageblocks_mixed."""
    if s.pb_pin[pb] > 0:
        s.ctr[C_PB_MIXED] += np.int64(mt == MIGRATE_MOVABLE) - np.int64(s.pb_mt[pb] == MIGRATE_MOVABLE)
    s.pb_mt[pb] = mt
