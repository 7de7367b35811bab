"""Invariants of the state, recounted from the arrays (vectorized; for tests and debugging).

`check_state(s)` returns a list of violations (empty when the state is consistent):
every page is in exactly one of {free buddy block, per-CPU list, allocated block,
cache, reserved, hole}; the counters equal a recount from the arrays.
"""
from __future__ import annotations

import numpy as np

from .constants import (
    PTRS_PER_PMD,
    MAP_LEAF, MIGRATE_MOVABLE, MIGRATE_UNMAPPED, MAP_NONE, NR_MIGRATETYPES, NR_PAGE_ORDERS, PAGEBLOCK_ORDER, PG_ALLOC,
    PG_BUDDY, PG_CACHE, PG_HOLE, PG_PCP, PG_RESERVED, PMD_PAGES, PROT_PRESENT, PUD_PAGES,
)
from .layout import (
    C_CACHE_FREE, C_CACHE_HELD, C_CACHE_USED, C_DM_1G, C_DM_2M, C_DM_4K, C_NP_PAGES, C_NR_FREE,
    C_NR_PCP, C_PACKS, C_PACK_CHUNKS, C_PB_MIXED, C_PB_POLLUTED, C_PT_PAGES, POL_FREETYPE, POL_MIGRATETYPE, P_POLICY,
    V_PACK_COUNT,
)


def _cover(n: int, heads: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """How many blocks cover each page (difference array over block extents)."""
    d = np.zeros(n + 1, np.int64)
    np.add.at(d, heads, 1)
    np.add.at(d, heads + (1 << orders.astype(np.int64)), -1)
    return np.cumsum(d[:-1])


def walk_list(s, head: int) -> list[int]:
    out = []
    pfn = int(head)
    while pfn >= 0:
        out.append(pfn)
        pfn = int(s.pg_next[pfn])
        if len(out) > s.pg_next.size:
            raise RuntimeError("free list has a cycle")
    return out


def check_state(s) -> list[str]:
    bad: list[str] = []
    n = s.pg_flags.size
    f = s.pg_flags
    heads = np.flatnonzero(f & (PG_BUDDY | PG_ALLOC))  # free or allocated, zone or cache
    cover = _cover(n, heads, s.pg_order[heads])
    cover += ((f & (PG_PCP | PG_RESERVED | PG_HOLE)) != 0).astype(np.int64)
    if (cover != 1).any():
        i = int(np.flatnonzero(cover != 1)[0])
        bad.append(f"page {i} is covered {int(cover[i])} times (free/pcp/allocated/cached/reserved/hole)")
    buddy = np.flatnonzero((f & (PG_BUDDY | PG_CACHE)) == PG_BUDDY)
    free_pages = int((1 << s.pg_order[buddy].astype(np.int64)).sum())
    if free_pages != int(s.ctr[C_NR_FREE]):
        bad.append(f"NR_FREE_PAGES {int(s.ctr[C_NR_FREE])} != recount {free_pages}")
    listed = 0
    for order in range(NR_PAGE_ORDERS):
        for mt in range(NR_MIGRATETYPES):
            pfns = walk_list(s, s.free_head[order, mt])
            if len(pfns) != int(s.nr_free[order, mt]):
                bad.append(f"free_area[{order}][{mt}] nr_free {int(s.nr_free[order, mt])} != list length {len(pfns)}")
            if pfns and ((s.pg_order[pfns] != order).any() or (s.pg_mt[pfns] != mt).any()):
                bad.append(f"free_area[{order}][{mt}] holds a block of another order or type")
            listed += len(pfns) << order
    if listed != free_pages:
        bad.append(f"pages on free lists {listed} != pages in PageBuddy blocks {free_pages}")
    cfree = np.flatnonzero((f & (PG_BUDDY | PG_CACHE)) == (PG_BUDDY | PG_CACHE))
    cached_free = int((1 << s.pg_order[cfree].astype(np.int64)).sum())
    on_cache_lists = sum(len(walk_list(s, s.cache_head[o, 0])) << o for o in range(s.cache_head.shape[0]))
    if not cached_free == on_cache_lists == int(s.ctr[C_CACHE_FREE]):
        bad.append(f"cache free pages: flags {cached_free}, lists {on_cache_lists}, counter {int(s.ctr[C_CACHE_FREE])}")
    cused = np.flatnonzero((f & (PG_ALLOC | PG_CACHE)) == (PG_ALLOC | PG_CACHE))
    cached_used = int((1 << s.pg_order[cused].astype(np.int64)).sum())
    if s.par[P_POLICY] not in (POL_MIGRATETYPE, POL_FREETYPE) and (cached_used != int(s.ctr[C_CACHE_USED])
                                                or cached_used + cached_free != int(s.ctr[C_CACHE_HELD])):
        bad.append(f"cache used pages {cached_used} / held {int(s.ctr[C_CACHE_HELD])} disagree with the counters")
    pcp = int(((f & PG_PCP) != 0).sum())
    if pcp != int(s.ctr[C_NR_PCP]) or pcp != int(s.pcp_count.sum()):
        bad.append(f"per-CPU pages {pcp} != counter {int(s.ctr[C_NR_PCP])} / {int(s.pcp_count.sum())}")
    bad += check_packs(s)
    bad += check_owners(s)
    if s.par[P_POLICY] == POL_FREETYPE:
        bad += check_freetype(s)
    polluted, mixed, pins = pollution_recount(s)
    kept = (int(s.ctr[C_PB_POLLUTED]), int(s.ctr[C_PB_MIXED]))
    if kept != (polluted, mixed):
        bad.append(f"pageblock pollution: counters {kept} != recount {(polluted, mixed)}")
    if (pins != s.pb_pin).any():
        bad.append(f"pinned pages of {int((pins != s.pb_pin).sum())} pageblocks disagree with pb_pin")
    # direct map
    in1g = np.repeat(s.pud_map == MAP_LEAF, PTRS_PER_PMD)
    nr1g = int((s.pud_map == MAP_LEAF).sum())
    nr2m = int(((s.pmd_map == MAP_LEAF) & ~in1g).sum())
    pte_regions = (s.pmd_map != MAP_NONE) & (s.pmd_map != MAP_LEAF) & ~in1g
    ram = (f & PG_HOLE) == 0
    nr4k = int((ram & np.repeat(pte_regions, PMD_PAGES)).sum())
    for name, idx, val in (("DirectMap1G", C_DM_1G, nr1g), ("DirectMap2M", C_DM_2M, nr2m), ("DirectMap4k", C_DM_4K, nr4k)):
        if int(s.ctr[idx]) != val:
            bad.append(f"{name} entries counter {int(s.ctr[idx])} != recount {val}")
    pts = int((s.pmd_pt >= 0).sum() + (s.pud_pt >= 0).sum())
    if pts != int(s.ctr[C_PT_PAGES]):
        bad.append(f"direct_map_pt_pages {int(s.ctr[C_PT_PAGES])} != page tables recorded {pts}")
    nonpresent = int((ram & ((s.prot & PROT_PRESENT) == 0)).sum())
    if nonpresent != int(s.ctr[C_NP_PAGES]):
        bad.append(f"direct_map_np_pages {int(s.ctr[C_NP_PAGES])} != recount {nonpresent}")
    # a large leaf has one protection for all its pages
    for size, pages, leaves in (("2M", PMD_PAGES, (s.pmd_map == MAP_LEAF) & ~in1g),
                                ("1G", PUD_PAGES, s.pud_map == MAP_LEAF)):
        p = s.prot.reshape(-1, pages)[leaves]
        if (p != p[:, :1]).any():
            bad.append(f"a {size} leaf has pages with different protections")
    return bad


def check_owners(s) -> list[str]:
    """The reverse map for migration: an owner only at an allocated block head, and the
    owner's pfn (the event loop's a_pfn, State.alloc_pfn) is that head."""
    bad = []
    owned = np.flatnonzero(s.pg_owner >= 0)
    if owned.size == 0:
        return bad
    if ((s.pg_flags[owned] & PG_ALLOC) == 0).any():
        bad.append(f"{int(((s.pg_flags[owned] & PG_ALLOC) == 0).sum())} pages have an owner but are no allocated block head")
    ids = s.pg_owner[owned].astype(np.int64)
    if (ids >= s.alloc_pfn.size).any():
        bad.append("an owner id is beyond the allocation table")
    elif (s.alloc_pfn[ids] != owned).any():
        bad.append(f"{int((s.alloc_pfn[ids] != owned).sum())} owners' a_pfn do not point at their block")
    return bad


def pollution_recount(s) -> tuple[int, int, np.ndarray]:
    """Pageblocks holding (part of) a non-movable allocated or cached block; of those, the
    MIGRATE_MOVABLE ones; and the pinned pages per pageblock (pollution.py's pb_pin)."""
    heads = np.flatnonzero(s.pg_flags & (PG_ALLOC | PG_CACHE))
    heads = heads[s.pg_mt[heads] != MIGRATE_MOVABLE]
    pages = np.int64(1) << s.pg_order[heads].astype(np.int64)
    cnt = np.maximum(1, pages >> PAGEBLOCK_ORDER)  # pageblocks each block covers
    starts = np.cumsum(cnt) - cnt
    idx = np.repeat(heads >> PAGEBLOCK_ORDER, cnt) + (np.arange(int(cnt.sum())) - np.repeat(starts, cnt))
    pins = np.zeros(s.pb_mt.shape[0], np.int64)
    np.add.at(pins, idx, np.repeat(np.minimum(pages, 1 << PAGEBLOCK_ORDER), cnt))
    pb = np.flatnonzero(pins)
    return int(pb.size), int((s.pb_mt[pb] == MIGRATE_MOVABLE).sum()), pins


def check_packs(s) -> list[str]:
    """bpf_prog_pack: each live pack's bitmap popcount equals its use count, the counters
    equal the recount, and every live pack is an allocated 2M block of the policy's cache."""
    bad = []
    live = s.pack_list[:int(s.var[V_PACK_COUNT])]
    bits = np.unpackbits(s.pack_bits.view(np.uint8), axis=1).sum(axis=1)
    if (bits != s.pack_used).any():
        bad.append("a pack's bitmap disagrees with its chunks in use")
    if int(s.pack_used[live].sum()) != int(s.ctr[C_PACK_CHUNKS]) or len(live) != int(s.ctr[C_PACKS]):
        bad.append(f"bpf_prog_pack counters {int(s.ctr[C_PACKS])} packs / {int(s.ctr[C_PACK_CHUNKS])} chunks "
                   f"!= recount {len(live)} / {int(s.pack_used[live].sum())}")
    if (s.pack_pfn >= 0).sum() != len(live) or (s.pack_pfn[live] < 0).any():
        bad.append("pack slots and pack_list disagree")
    for pfn in s.pack_pfn[live]:
        if (s.pg_flags[pfn] & (PG_ALLOC | PG_CACHE)) != (PG_ALLOC | PG_CACHE) or s.pg_order[pfn] != PAGEBLOCK_ORDER:
            bad.append(f"pack at pfn {int(pfn)} is not an allocated 2M block of the cache")
    return bad


def check_freetype(s) -> list[str]:
    """freetype: the UNMAPPED flag (pb_mt == MIGRATE_UNMAPPED) and the free lists agree. Every
    page of an unmapped pageblock is off the direct map; free blocks (buddy lists and per-CPU
    lists) are on the unmapped lists exactly when their pageblock has the flag; held pages are
    the unmapped pageblocks' pages."""
    bad = []
    unmapped_pb = s.pb_mt == MIGRATE_UNMAPPED
    ram = (s.pg_flags & PG_HOLE) == 0
    present = ((s.prot & PROT_PRESENT) != 0) & ram
    if (present.reshape(unmapped_pb.size, -1).any(axis=1) & unmapped_pb).any():
        bad.append("an unmapped pageblock has a page present in the direct map")
    for order in range(NR_PAGE_ORDERS):
        for mt in range(NR_MIGRATETYPES):
            pfns = np.asarray(walk_list(s, s.free_head[order, mt]), np.int64)
            if pfns.size and (unmapped_pb[pfns >> PAGEBLOCK_ORDER] != (mt == MIGRATE_UNMAPPED)).any():
                bad.append(f"free_area[{order}][{mt}] holds a block of a pageblock with the other flag")
    for cpu in range(s.pcp_head.shape[0]):
        for mt in range(s.pcp_head.shape[1]):
            pfns = np.asarray(walk_list(s, s.pcp_head[cpu, mt]), np.int64)
            if pfns.size and (unmapped_pb[pfns >> PAGEBLOCK_ORDER] != (mt == MIGRATE_UNMAPPED)).any():
                bad.append(f"per-CPU list [{cpu}][{mt}] holds a page of a pageblock with the other flag")
    held = int(unmapped_pb.sum()) << PAGEBLOCK_ORDER
    if held != int(s.ctr[C_CACHE_HELD]):
        bad.append(f"unmapped pageblocks hold {held} pages != unmapped_cache_held_pages {int(s.ctr[C_CACHE_HELD])}")
    return bad
