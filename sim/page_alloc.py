"""The buddy page allocator of one zone (mm/page_alloc.c), compiled with numba.

Free lists per order 0..MAX_PAGE_ORDER and migratetype are doubly linked lists through
the per-page arrays pg_next/pg_prev; per-CPU lists (order 0) reuse the same links.
"""
import numpy as np

from .constants import (
    MAX_PAGE_ORDER, MIGRATE_MOVABLE, MIGRATE_PCPTYPES, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE,
    PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_ALLOC, PG_BUDDY, PG_CACHE, PG_PCP,
)
from .buddy import (
    add_to_free_list, buddy_merge, del_from_free_list, expand, list_add, list_del, page_is_buddy,
    set_pageblock_range,
)
from .jit import njit, njit_inline
from .layout import (
    C_ALLOC_FAIL, C_ALLOC_FAIL_ORDER, C_ALLOC_PAGES, C_ALLOCS, C_CLAIM, C_FREE_PAGES, C_FREES, C_NR_FREE,
    C_NR_PCP, C_PCP_DRAIN, C_PCP_REFILL, C_STEAL, FALLBACK_NONE, FALLBACK_TOO_SMALL, NIL, NO_PAGE,
    P_NOFRAGMENT, P_PCP_BATCH, P_PCP_HIGH, P_PCP_ON, P_POLICY, P_WMARK_LOW, P_WMARK_MIN, POL_FREETYPE, V_CPU,
)
from .pollution import set_block_head, set_head_flags, set_pageblock_mt

ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_NO_WATERMARKS = range(3)


@njit
def fallback_mt(start_mt, i):
    """fallbacks[][] (mm/page_alloc.c): the i-th fallback migratetype of start_mt."""
    if start_mt == MIGRATE_UNMOVABLE:
        return MIGRATE_RECLAIMABLE if i == 0 else MIGRATE_MOVABLE
    if start_mt == MIGRATE_MOVABLE:
        return MIGRATE_RECLAIMABLE if i == 0 else MIGRATE_UNMOVABLE
    if start_mt == MIGRATE_RECLAIMABLE:
        return MIGRATE_UNMOVABLE if i == 0 else MIGRATE_MOVABLE
    return FALLBACK_NONE  # MIGRATE_UNMAPPED and others have no fallbacks


# --- free lists -------------------------------------------------------------------


@njit
def move_to_free_list(s, pfn, order, old_mt, new_mt):
    """move_to_free_list: to the tail of another migratetype's list."""
    del_from_free_list(s, pfn, order, old_mt)
    add_to_free_list(s, pfn, order, new_mt, True)


@njit_inline
def buddy_merge_likely(s, pfn, buddy_pfn, order):
    """buddy_merge_likely: put the block at the tail if its parent is likely to merge."""
    if order >= MAX_PAGE_ORDER - 1:
        return False
    higher_page_pfn = buddy_pfn & pfn
    higher_buddy = higher_page_pfn ^ (1 << (order + 1))
    return page_is_buddy(s, higher_buddy, order + 1, False)


@njit_inline
def __free_one_page(s, pfn, order, mt, to_tail_forced):
    """__free_one_page: merge with free buddies up to MAX_PAGE_ORDER, then add to the
    head of the free list, or to the tail when buddy_merge_likely()."""
    pfn, order = buddy_merge(s, pfn, order, mt, False)
    to_tail = to_tail_forced or buddy_merge_likely(s, pfn, pfn ^ (1 << order), order)
    add_to_free_list(s, pfn, order, mt, to_tail)
    return pfn


@njit_inline
def __rmqueue_smallest(s, order, mt):
    """__rmqueue_smallest: the smallest free block of this migratetype, split by expand()."""
    for current_order in range(order, MAX_PAGE_ORDER + 1):
        pfn = s.free_head[current_order, mt]
        if pfn == NIL:
            continue
        del_from_free_list(s, pfn, current_order, mt)
        expand(s, pfn, order, current_order, mt, False)
        return pfn
    return NO_PAGE


@njit
def should_try_claim_block(order, start_mt):
    """should_try_claim_block: large enough, or an unmovable/reclaimable allocation."""
    return order >= PAGEBLOCK_ORDER // 2 or start_mt == MIGRATE_RECLAIMABLE or start_mt == MIGRATE_UNMOVABLE


@njit
def find_suitable_fallback(s, order, start_mt, claimable):
    """find_suitable_fallback: a fallback migratetype with a free block of this order,
    FALLBACK_NONE, or FALLBACK_TOO_SMALL (too small to claim: stop looking)."""
    if claimable and not should_try_claim_block(order, start_mt):
        return FALLBACK_TOO_SMALL
    for i in range(2):
        fmt = fallback_mt(start_mt, i)
        if fmt != FALLBACK_NONE and s.nr_free[order, fmt] > 0:
            return fmt
    return FALLBACK_NONE


@njit
def prep_move_freepages_block(s, block_start):
    """prep_move_freepages_block: count free pages and movable (LRU) pages in a pageblock."""
    free_pages = 0
    movable_pages = 0
    pfn = block_start
    end = block_start + PAGEBLOCK_NR_PAGES
    while pfn < end:
        f = s.pg_flags[pfn]
        if (f & (PG_BUDDY | PG_CACHE)) == PG_BUDDY:
            free_pages += 1 << np.int64(s.pg_order[pfn])
            pfn += 1 << np.int64(s.pg_order[pfn])
            continue
        if (f & PG_ALLOC) and (f & PG_CACHE) == 0 and s.pg_mt[pfn] == MIGRATE_MOVABLE:
            movable_pages += 1 << np.int64(s.pg_order[pfn])
        if f & (PG_ALLOC | PG_BUDDY):  # allocated, or free inside a policy's cache
            pfn += 1 << np.int64(s.pg_order[pfn])
            continue
        pfn += 1
    return free_pages, movable_pages


@njit
def __move_freepages_block(s, block_start, old_mt, new_mt):
    """__move_freepages_block: move the block's free pages of old_mt to new_mt's lists."""
    pfn = block_start
    end = block_start + PAGEBLOCK_NR_PAGES
    while pfn < end:
        if s.pg_flags[pfn] & (PG_BUDDY | PG_ALLOC):
            order = np.int64(s.pg_order[pfn])
            if (s.pg_flags[pfn] & (PG_BUDDY | PG_CACHE)) == PG_BUDDY and s.pg_mt[pfn] == old_mt:
                move_to_free_list(s, pfn, order, old_mt, new_mt)
            pfn += 1 << order
        else:
            pfn += 1


@njit
def try_to_claim_block(s, pfn, current_order, order, start_mt, block_mt):
    """try_to_claim_block: take the whole pageblock for start_mt when the free block is
    at least a pageblock, or when free + compatible pages are at least half of it."""
    if current_order >= PAGEBLOCK_ORDER:
        del_from_free_list(s, pfn, current_order, block_mt)
        set_pageblock_range(s, pfn, current_order, start_mt)
        expand(s, pfn, order, current_order, start_mt, False)
        s.ctr[C_CLAIM] += 1
        return pfn
    block_start = (pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
    free_pages, movable_pages = prep_move_freepages_block(s, block_start)
    if start_mt == MIGRATE_MOVABLE:
        alike_pages = movable_pages
    elif block_mt == MIGRATE_MOVABLE:
        alike_pages = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
    else:
        alike_pages = 0
    if free_pages + alike_pages >= (1 << (PAGEBLOCK_ORDER - 1)):
        __move_freepages_block(s, block_start, block_mt, start_mt)
        set_pageblock_mt(s, block_start >> PAGEBLOCK_ORDER, start_mt)
        s.ctr[C_CLAIM] += 1
        return __rmqueue_smallest(s, order, start_mt)
    return NO_PAGE


@njit
def __rmqueue_claim(s, order, start_mt, nofragment):
    """__rmqueue_claim: the largest fallback block, claiming its pageblock.
    With ALLOC_NOFRAGMENT only whole pageblocks are considered."""
    min_order = order
    if nofragment and order < PAGEBLOCK_ORDER:
        min_order = PAGEBLOCK_ORDER
    for current_order in range(MAX_PAGE_ORDER, min_order - 1, -1):
        fmt = find_suitable_fallback(s, current_order, start_mt, True)
        if fmt == FALLBACK_TOO_SMALL:
            break
        if fmt == FALLBACK_NONE:
            continue
        pfn = s.free_head[current_order, fmt]
        pfn = try_to_claim_block(s, pfn, current_order, order, start_mt, fmt)
        if pfn >= 0:
            return pfn
    return NO_PAGE


@njit
def __rmqueue_steal(s, order, start_mt):
    """__rmqueue_steal: the smallest fallback block, split; the rest stays on the
    fallback migratetype's lists (page_del_and_expand)."""
    for current_order in range(order, MAX_PAGE_ORDER + 1):
        fmt = find_suitable_fallback(s, current_order, start_mt, False)
        if fmt == FALLBACK_NONE:
            continue
        pfn = s.free_head[current_order, fmt]
        del_from_free_list(s, pfn, current_order, fmt)
        expand(s, pfn, order, current_order, fmt, False)
        s.ctr[C_STEAL] += 1
        return pfn
    return NO_PAGE


@njit
def __rmqueue(s, order, mt, nofragment):
    """__rmqueue: own lists, then claim a fallback block, then steal."""
    pfn = __rmqueue_smallest(s, order, mt)
    if pfn >= 0:
        return pfn
    if mt >= MIGRATE_PCPTYPES:
        return NO_PAGE
    pfn = __rmqueue_claim(s, order, mt, nofragment)
    if pfn >= 0:
        return pfn
    if not nofragment:
        pfn = __rmqueue_steal(s, order, mt)
    return pfn


@njit_inline
def rmqueue_inline(s, order, mt, nofragment):
    """__rmqueue with its common case (a block on mt's own lists) inlined into the caller and
    the fallbacks called out of line: a call from compiled code passes every array of the
    state, which costs more than the common case itself."""
    pfn = __rmqueue_smallest(s, order, mt)
    if pfn < 0:
        pfn = __rmqueue(s, order, mt, nofragment)
    return pfn


# --- per-CPU lists (order 0) -----------------------------------------------------


@njit_inline
def pcp_add(s, cpu, mt, pfn, tail):
    set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ (PG_ALLOC | PG_BUDDY))) | PG_PCP, 0, mt)
    list_add(s.pg_next, s.pg_prev, s.pcp_head, s.pcp_tail, cpu, mt, pfn, tail)
    s.pcp_count[cpu] += 1
    s.ctr[C_NR_PCP] += 1


@njit_inline
def pcp_del(s, cpu, mt, pfn):
    list_del(s.pg_next, s.pg_prev, s.pcp_head, s.pcp_tail, cpu, mt, pfn)
    s.pg_flags[pfn] &= 0xFF ^ PG_PCP
    s.pcp_count[cpu] -= 1
    s.ctr[C_NR_PCP] -= 1


@njit
def rmqueue_bulk(s, cpu, mt, count, nofragment):
    """rmqueue_bulk: refill a per-CPU list with `count` order-0 pages (added at the tail)."""
    s.ctr[C_PCP_REFILL] += 1
    got = 0
    for _ in range(count):
        pfn = rmqueue_inline(s, 0, mt, nofragment)
        if pfn < 0:
            break
        pcp_add(s, cpu, mt, pfn, True)
        got += 1
    return got


@njit
def free_pcppages_bulk(s, cpu, count, first):
    """free_pcppages_bulk: `count` pages back to the buddy lists, starting with list `first`
    (the freed page's): each list from its tail until it is empty or the count is reached,
    then the next non-empty list, round robin."""
    s.ctr[C_PCP_DRAIN] += 1
    count = min(count, s.pcp_count[cpu])
    ncols = s.pcp_head.shape[1]  # MIGRATE_PCPTYPES, + the unmapped list under freetype
    mt = first
    while count > 0:
        while s.pcp_tail[cpu, mt] < 0:
            mt = (mt + 1) % ncols
        while count > 0 and s.pcp_tail[cpu, mt] >= 0:
            pfn = s.pcp_tail[cpu, mt]
            pcp_del(s, cpu, mt, pfn)
            __free_one_page(s, pfn, 0, s.pb_mt[pfn >> PAGEBLOCK_ORDER], False)
            count -= 1
        mt = (mt + 1) % ncols


@njit
def nr_pcp_free(s, cpu):
    """nr_pcp_free: how many pages a free that reached pcp->high returns: at least batch, and
    twice as many each time the CPU frees again without allocating in between (free_factor),
    up to high - batch."""
    high = s.par[P_PCP_HIGH]
    batch = s.par[P_PCP_BATCH]
    if high < batch:
        return 1
    max_nr_free = high - batch
    n = batch << s.pcp_free_factor[cpu]
    if n < max_nr_free:
        s.pcp_free_factor[cpu] += 1
    return min(max(n, batch), max_nr_free)


@njit
def drain_all_pages(s):
    """drain_all_pages: return every per-CPU page to the buddy lists."""
    for cpu in range(s.pcp_count.shape[0]):
        if s.pcp_count[cpu] > 0:
            free_pcppages_bulk(s, cpu, s.pcp_count[cpu], 0)


# --- allocation and free entry points ---------------------------------------------


@njit_inline
def zone_watermark_ok(s, order, mark):
    """__zone_watermark_ok: enough free pages above the mark, and a block of >= order."""
    free_pages = s.ctr[C_NR_FREE] - ((1 << order) - 1)
    if free_pages <= mark:
        return False
    if order == 0:
        return True
    # freetype: the unmapped freetype's lists (index MIGRATE_PCPTYPES) are free lists of the zone too
    nr_lists = MIGRATE_PCPTYPES + 1 if s.par[P_POLICY] == POL_FREETYPE else MIGRATE_PCPTYPES
    for o in range(order, MAX_PAGE_ORDER + 1):
        for mt in range(nr_lists):
            if s.nr_free[o, mt] > 0:
                return True
    return False


@njit_inline
def rmqueue_noremap(s, order, mt, cpu):
    """rmqueue: per-CPU list for order 0 when enabled (one list per pcp migratetype, plus one
    for unmapped pages under freetype: pcp_head has a 4th column then), else the zone's free lists
    (rmqueue_buddy, with the ALLOC_NOFRAGMENT first pass of get_page_from_freelist)."""
    nofrag = s.par[P_NOFRAGMENT] != 0
    if order == 0 and s.par[P_PCP_ON] != 0 and mt < s.pcp_head.shape[1]:
        if s.pcp_head[cpu, mt] == NIL:
            if rmqueue_bulk(s, cpu, mt, s.par[P_PCP_BATCH], nofrag) == 0 and nofrag:
                rmqueue_bulk(s, cpu, mt, s.par[P_PCP_BATCH], False)
        s.pcp_free_factor[cpu] >>= 1  # rmqueue_pcplist: an allocation halves the next free burst
        pfn = s.pcp_head[cpu, mt]
        if pfn < 0:
            return NO_PAGE  # rmqueue_pcplist failed, so would rmqueue_buddy's __rmqueue
        pcp_del(s, cpu, mt, pfn)
        return pfn
    pfn = rmqueue_inline(s, order, mt, nofrag)
    if pfn < 0 and nofrag:
        pfn = __rmqueue(s, order, mt, False)
    return pfn


@njit_inline
def rmqueue(s, order, mt, cpu):
    """rmqueue; under freetype, rmqueue_buddy then calls __rmqueue_direct_map when __rmqueue
    failed (a per-CPU refill, rmqueue_bulk, never does)."""
    pfn = rmqueue_noremap(s, order, mt, cpu)
    if pfn < 0 and s.par[P_POLICY] == POL_FREETYPE:
        pfn = _freetype.rmqueue_direct_map(s, order, mt)
    return pfn


@njit_inline
def prep_new_page(s, pfn, order, mt):
    set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ (PG_BUDDY | PG_PCP))) | PG_ALLOC, order, mt)
    s.ctr[C_ALLOCS] += 1
    s.ctr[C_ALLOC_PAGES] += 1 << order


@njit_inline
def watermark_passes(s, order, alloc_flags):
    """get_page_from_freelist's zone_watermark_fast for alloc_flags, before rmqueue: also for
    order-0 pages already on this CPU's list (the zone's free pages do not count those)."""
    if alloc_flags == ALLOC_NO_WATERMARKS:
        return True
    mark = s.par[P_WMARK_LOW] if alloc_flags == ALLOC_WMARK_LOW else s.par[P_WMARK_MIN]
    return zone_watermark_ok(s, order, mark)


@njit_inline
def get_page_from_freelist(s, order, mt, cpu, alloc_flags):
    """get_page_from_freelist for one zone: watermark check, then rmqueue."""
    if not watermark_passes(s, order, alloc_flags):
        return NO_PAGE
    pfn = rmqueue(s, order, mt, cpu)
    if pfn >= 0:
        prep_new_page(s, pfn, order, mt)
    return pfn


@njit
def alloc_pgtable_noremap(s, alloc_flags):
    """__alloc_pages_noreclaim(order 0, unmovable) for a direct-map split's page-table page
    (directmap.alloc_pgtable_page): without __rmqueue_direct_map, whose own set_direct_map call
    may split and so need a page table (freetype: a page table never remaps a block)."""
    cpu = s.var[V_CPU]
    for attempt in range(2):  # then again after draining the per-CPU lists (__alloc_pages_slowpath)
        if attempt == 1:
            if s.ctr[C_NR_PCP] == 0:
                break
            drain_all_pages(s)
        if watermark_passes(s, 0, alloc_flags):
            pfn = rmqueue_noremap(s, 0, MIGRATE_UNMOVABLE, cpu)
            if pfn >= 0:
                prep_new_page(s, pfn, 0, MIGRATE_UNMOVABLE)
                return pfn
    return NO_PAGE


@njit
def alloc_failed(s, order):
    s.ctr[C_ALLOC_FAIL] += 1
    s.ctr[C_ALLOC_FAIL_ORDER + order] += 1


@njit
def get_page_from_freelist_call(s, order, mt, cpu, alloc_flags):
    """get_page_from_freelist out of line, for the slow paths: the event loop inlines its own
    copy, every other caller shares this one (each inlined copy costs compile time)."""
    return get_page_from_freelist(s, order, mt, cpu, alloc_flags)


@njit
def __alloc_pages_noreclaim(s, order, mt, cpu, alloc_flags):
    """The allocator without reclaim: fast path at the low watermark, then the
    min watermark, then again after draining the per-CPU lists."""
    pfn = get_page_from_freelist_call(s, order, mt, cpu, alloc_flags)
    if pfn >= 0:
        return pfn
    return __alloc_pages_slowpath(s, order, mt, cpu, alloc_flags)


@njit
def __alloc_pages_slowpath(s, order, mt, cpu, alloc_flags):
    """__alloc_pages_slowpath without reclaim, after get_page_from_freelist failed at
    alloc_flags: the min watermark, then again after draining the per-CPU lists. The
    event loop inlines the fast path and calls this out of line (a call passes every
    array of the state)."""
    pfn = NO_PAGE
    if alloc_flags == ALLOC_WMARK_LOW:
        pfn = get_page_from_freelist_call(s, order, mt, cpu, ALLOC_WMARK_MIN)
        if pfn >= 0:
            return pfn
    if s.ctr[C_NR_PCP] > 0:
        drain_all_pages(s)
        pfn = get_page_from_freelist(s, order, mt, cpu, ALLOC_WMARK_MIN if alloc_flags != ALLOC_NO_WATERMARKS else alloc_flags)
    return pfn


@njit_inline
def __free_pages(s, pfn, order, cpu):
    """__free_pages: order 0 to the per-CPU list of the page's pageblock migratetype
    (free_unref_page), higher orders straight to the buddy lists (__free_pages_ok)."""
    s.ctr[C_FREES] += 1
    s.ctr[C_FREE_PAGES] += 1 << order
    set_head_flags(s, pfn, s.pg_flags[pfn] & (0xFF ^ PG_ALLOC))
    mt = s.pb_mt[pfn >> PAGEBLOCK_ORDER]
    if order == 0 and s.par[P_PCP_ON] != 0 and mt < s.pcp_head.shape[1]:
        pcp_add(s, cpu, mt, pfn, False)
        if s.pcp_count[cpu] >= s.par[P_PCP_HIGH]:
            free_pcppages_bulk(s, cpu, nr_pcp_free(s, cpu), mt)
        return
    __free_one_page(s, pfn, order, mt, False)


# names without leading underscores, for callers inside classes (Python mangles __names there)
alloc_pages_noreclaim = __alloc_pages_noreclaim
free_pages = __free_pages

# freetype.py builds on this module (it imports it); the model resolves the module attribute
# _freetype.rmqueue_direct_map when it compiles rmqueue, after both modules are loaded
from . import freetype as _freetype  # noqa: E402
