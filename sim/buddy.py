"""The buddy core shared by the zone's free lists (mm/page_alloc.c) and a policy's cache of 2M
blocks (cache.py): doubly linked lists through pg_next/pg_prev, the free areas, merging a
freed block with its free buddies and splitting a block (expand).

A free area is a set of lists per order: the zone's `free_head[order, migratetype]` (block
heads carry PG_BUDDY, counted in NR_FREE_PAGES) or the cache's `cache_head[order, 0]` (heads
carry PG_BUDDY | PG_CACHE, counted in unmapped_cache_free_pages). `cache` selects one.
"""
from .constants import (
    MAX_PAGE_ORDER, MIGRATE_PCPTYPES, MIGRATE_UNMOVABLE, PAGEBLOCK_ORDER, PG_ALLOC, PG_BUDDY, PG_CACHE, PG_PCP,
)
from .jit import njit, njit_inline
from .layout import C_CACHE_FREE, C_NR_FREE, NIL, P_NR_PAGES
from .pollution import set_block_head, set_head_flags, set_pageblock_mt

CACHE_MAX_ORDER = PAGEBLOCK_ORDER  # a cache merges up to its 2M blocks


# --- one doubly linked list helper (free lists, per-CPU lists, cache lists) -------------------


@njit_inline
def list_add(nxt, prv, head, tail, i, j, pfn, at_tail):
    """list_add / list_add_tail of pfn on the list head[i, j] .. tail[i, j]."""
    h = head[i, j]
    if h == NIL:
        nxt[pfn] = NIL
        prv[pfn] = NIL
        head[i, j] = pfn
        tail[i, j] = pfn
    elif at_tail:
        t = tail[i, j]
        nxt[t] = pfn
        prv[pfn] = t
        nxt[pfn] = NIL
        tail[i, j] = pfn
    else:
        prv[h] = pfn
        nxt[pfn] = h
        prv[pfn] = NIL
        head[i, j] = pfn


@njit_inline
def list_del(nxt, prv, head, tail, i, j, pfn):
    """list_del of pfn from the list head[i, j] .. tail[i, j]."""
    n = nxt[pfn]
    p = prv[pfn]
    if p != NIL:
        nxt[p] = n
    else:
        head[i, j] = n
    if n != NIL:
        prv[n] = p
    else:
        tail[i, j] = p
    nxt[pfn] = NIL
    prv[pfn] = NIL


# --- the two free areas --------------------------------------------------------------------


@njit_inline
def add_to_free_list(s, pfn, order, mt, tail):
    """__add_to_free_list + set_buddy_order."""
    set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ (PG_ALLOC | PG_PCP))) | PG_BUDDY, order, mt)
    list_add(s.pg_next, s.pg_prev, s.free_head, s.free_tail, order, mt, pfn, tail)
    s.nr_free[order, mt] += 1
    s.ctr[C_NR_FREE] += 1 << order


@njit_inline
def del_from_free_list(s, pfn, order, mt):
    """__del_page_from_free_list: unlink and clear PageBuddy."""
    list_del(s.pg_next, s.pg_prev, s.free_head, s.free_tail, order, mt, pfn)
    s.pg_flags[pfn] &= 0xFF ^ PG_BUDDY
    s.nr_free[order, mt] -= 1
    s.ctr[C_NR_FREE] -= 1 << order


@njit
def cache_add(s, pfn, order, tail):
    """A free block onto the cache's lists (its pages stay off the zone's accounting)."""
    set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ (PG_ALLOC | PG_PCP))) | PG_BUDDY | PG_CACHE, order,
                   MIGRATE_UNMOVABLE)
    list_add(s.pg_next, s.pg_prev, s.cache_head, s.cache_tail, order, 0, pfn, tail)
    s.cache_nr[order, 0] += 1
    s.ctr[C_CACHE_FREE] += 1 << order


@njit
def cache_del(s, pfn, order):
    list_del(s.pg_next, s.pg_prev, s.cache_head, s.cache_tail, order, 0, pfn)
    set_head_flags(s, pfn, s.pg_flags[pfn] & (0xFF ^ (PG_BUDDY | PG_CACHE)))
    s.cache_nr[order, 0] -= 1
    s.ctr[C_CACHE_FREE] -= 1 << order


@njit_inline
def page_is_buddy(s, pfn, order, cache):
    """page_is_buddy: the buddy is a free block head of exactly this order, in the same free
    area (the zone's, or the cache's)."""
    if pfn < 0 or pfn >= s.par[P_NR_PAGES]:
        return False
    want = (PG_BUDDY | PG_CACHE) if cache else PG_BUDDY
    return (s.pg_flags[pfn] & (PG_BUDDY | PG_CACHE)) == want and s.pg_order[pfn] == order


@njit
def set_pageblock_range(s, pfn, order, mt):
    """set_pageblock_migratetype / change_pageblock_range for order >= pageblock_order."""
    first = pfn >> PAGEBLOCK_ORDER
    for b in range(first, first + (1 << max(order - PAGEBLOCK_ORDER, 0))):
        set_pageblock_mt(s, b, mt)


# --- merge and split -------------------------------------------------------------------------


@njit_inline
def buddy_merge(s, pfn, order, mt, cache):
    """The merge loop of __free_one_page: coalesce with free buddies of the same free area,
    up to MAX_PAGE_ORDER in the zone (never across pageblocks of unmergeable migratetypes;
    "match buddy type" otherwise) or up to a 2M block in the cache. Returns (pfn, order)."""
    max_order = CACHE_MAX_ORDER if cache else MAX_PAGE_ORDER
    while order < max_order:
        buddy_pfn = pfn ^ (1 << order)
        if not page_is_buddy(s, buddy_pfn, order, cache):
            break
        if cache:
            cache_del(s, buddy_pfn, order)
        else:
            buddy_mt = s.pg_mt[buddy_pfn]
            if order >= PAGEBLOCK_ORDER and buddy_mt != mt and (mt >= MIGRATE_PCPTYPES
                                                                or buddy_mt >= MIGRATE_PCPTYPES):
                break  # !migratetype_is_mergeable(): no merging across such pageblocks
            del_from_free_list(s, buddy_pfn, order, buddy_mt)
            if order >= PAGEBLOCK_ORDER and buddy_mt != mt:
                # "Match buddy type": expand() later puts sub-blocks on the right lists
                set_pageblock_range(s, buddy_pfn, order, mt)
        pfn = pfn & buddy_pfn
        order += 1
    return pfn, order


@njit_inline
def expand(s, pfn, low, high, mt, cache):
    """expand: split a block of order `high` down to `low`, the upper halves to the head of the
    free area's lists (the zone's lists of `mt`, or the cache's)."""
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        if cache:
            cache_add(s, pfn + size, high, False)
        else:
            add_to_free_list(s, pfn + size, high, mt, False)
