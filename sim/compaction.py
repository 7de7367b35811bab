"""Compaction and page migration (mm/compaction.c, mm/migrate.c), compiled with numba.

Migration moves an allocated, movable, uncached block (order < pageblock_order) to a free
block of the same order and frees the old one; the block's owner follows it through the
reverse map `pg_owner` (the stream's allocation slot at the block head), which updates
`alloc_pfn[owner]` (State.alloc_pfn is the stream's lv.a_pfn).  Unmovable, reclaimable, unmapped (policy caches,
MIGRATE_UNMAPPED), per-CPU pages and page-table pages never migrate.  Migration copies
data: the direct map is not touched, so the 4K-split state of every region and the
protection of the old and new pfns stay as they were.  Only blocks whose pages are all
PAGE_KERNEL are moved, into free pages that are all PAGE_KERNEL (a movable page normally
is; one with another protection is a caller's set_memory_* target and is not migratable).

compact_zone: the migrate scanner walks pageblocks up from the zone start, the free scanner
walks pageblocks down from the end (both resume where the last run stopped:
compact_cached_migrate_pfn / compact_cached_free_pfn, reset when they meet).  Sources are
filtered by suitable_migration_source (async direct compaction: pageblocks of the request's
migratetype, movable for movable requests), targets by suitable_migration_target (movable
pageblocks not starting with a free block of the requested order).  It stops when
__compact_finished sees a free block of the order on the migratetype's list or a claimable
fallback block (checked at pageblock boundaries), or when the scanners meet.
compaction_suitable: order-0 watermark (min) + compact_gap (2 << order), and for costly
orders the fragmentation index above vm.extfrag_threshold.  Deferral: defer_compaction /
compaction_deferred / compaction_defer_reset with compact_defer_shift up to 6.

Triggers (engine.py, cache.py, policy.py):
* direct compaction (__alloc_pages_direct_compact) in the allocation slow path for costly
  orders (> PAGE_ALLOC_COSTLY_ORDER, THP order 9 included), once, after the min-watermark
  attempt and before reclaim.  COMPACT_PRIO_* simplified: one pass at COMPACT_PRIO_ASYNC
  (sources restricted by migratetype), and deferral applies to it (the kernel defers only
  after sync priorities; one async pass per failing allocation without deferral would scan
  the zone again and again, where the kernel's pageblock skip hints, not modelled, prevent that).
  A deferred attempt counts compact_stall and compact_fail, as in the kernel
  (try_to_compact_pages returns COMPACT_DEFERRED, not COMPACT_SKIPPED).
* kcompactd (kcompactd_do_work), woken by kswapd after reclaim for an order > 0:
  MIGRATE_SYNC_LIGHT (every pageblock is a source), the kernel's GFP_KERNEL migratetype.
* proactive compaction: every 500 ms of simulated time (HPAGE_FRAG_CHECK_INTERVAL_MSEC),
  when fragmentation_score_zone > fragmentation_score_wmark(high) compact (order -1) until the
  score is at most the low mark; no progress backs off 64x (COMPACT_MAX_DEFER_SHIFT).

The migrated source is freed straight to the buddy lists (the kernel drains the per-CPU
lists during compaction, drain_local_pages), so it can merge at once.
"""
import numpy as np

from .buddy import del_from_free_list, expand
from .constants import (
    MAX_PAGE_ORDER, MIGRATE_MOVABLE, MIGRATE_PCPTYPES, MIGRATE_UNMOVABLE, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER,
    PAGE_KERNEL, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_ALLOC, PG_BUDDY, PG_CACHE, PG_HOLE, PG_PCP,
)
from .jit import njit, njit_inline
from .layout import (
    C_COMPACT_DAEMON_WAKE, C_COMPACT_FAIL, C_COMPACT_FREE_SCANNED, C_COMPACT_ISOLATED, C_COMPACT_MIGRATE_SCANNED,
    C_COMPACT_STALL, C_COMPACT_SUCCESS, C_NR_FREE, C_PGMIGRATE_FAIL, C_PGMIGRATE_SUCCESS, NO_PAGE,
    P_COMPACT_PROACTIVENESS, P_COMPACTION, P_EXTFRAG_THRESHOLD, P_NR_PAGES, P_WMARK_LOW, P_WMARK_MIN,
    V_COMPACT_CONSIDERED, V_COMPACT_DEFER_SHIFT, V_COMPACT_FREE_CURSOR, V_COMPACT_FREE_PB,
    V_COMPACT_FREE_PB_FROM_END, V_COMPACT_MIGRATE_PFN, V_COMPACT_ORDER_FAILED, V_MIG_LOG_N, V_MIG_LOG_ON,
    V_PROACTIVE_NEXT_US, NIL,
)
from .page_alloc import (
    ALLOC_WMARK_MIN, __free_one_page, find_suitable_fallback, get_page_from_freelist_call, zone_watermark_ok,
)
from .pollution import set_block_head, set_head_flags

# compact_result (include/linux/compaction.h), the ones the model returns
COMPACT_SKIPPED = 1
COMPACT_DEFERRED = 2
COMPACT_CONTINUE = 4
COMPACT_COMPLETE = 5  # the scanners met in a run that started at the zone start
COMPACT_PARTIAL_SKIPPED = 6  # the scanners met in a run that resumed from cached positions
COMPACT_SUCCESS = 8
COMPACT_RESULT_NAMES = {1: "skipped", 2: "deferred", 4: "continue", 5: "complete", 6: "partial_skipped",
                        8: "success"}

# modes: direct compaction's first priority, kcompactd / the step API, proactive (order -1)
MODE_ASYNC = 0  # COMPACT_PRIO_ASYNC (MIGRATE_ASYNC, direct)
MODE_SYNC = 1  # MIGRATE_SYNC_LIGHT: kcompactd, m.compact()
MODE_PROACTIVE = 2  # proactive_compact_node

COMPACT_MAX_DEFER_SHIFT = 6
HPAGE_FRAG_CHECK_INTERVAL_US = 500_000  # HPAGE_FRAG_CHECK_INTERVAL_MSEC
COMPACTION_HPAGE_ORDER = PAGEBLOCK_ORDER

# compaction's scalar state: State.var[V_COMPACT_*, V_PROACTIVE_NEXT_US, V_MIG_LOG_*] (layout.SCALARS)


# --- fragmentation metrics (mm/vmstat.c, mm/compaction.c) ------------------------------


@njit
def fill_contig_page_info(s, order):
    """fill_contig_page_info: (free blocks, free pages, free blocks of >= order in units of order)."""
    total = 0
    pages = 0
    suitable = 0
    for o in range(NR_PAGE_ORDERS):
        n = 0
        for mt in range(s.nr_free.shape[1]):
            n += s.nr_free[o, mt]
        total += n
        pages += n << o
        if o >= order:
            suitable += n << (o - order)
    return total, pages, suitable


FRAG_INDEX_FREE = -1000  # __fragmentation_index: the order is free (no failure to explain)
ORDER_PROACTIVE = -1  # cc->order = -1: proactive compaction, no requested order


@njit
def fragmentation_index(s, order):
    """fragmentation_index (__fragmentation_index): FRAG_INDEX_FREE if a block of the order is free,
    else 0 (failure for lack of memory) .. 1000 (failure for fragmentation)."""
    total, pages, suitable = fill_contig_page_info(s, order)
    if total == 0:
        return 0
    if suitable:
        return FRAG_INDEX_FREE
    return 1000 - (1000 + (pages * 1000) // (1 << order)) // total


@njit
def fragmentation_score_zone(s):
    """fragmentation_score_zone = extfrag_for_order(zone, COMPACTION_HPAGE_ORDER): the share of
    free memory (0..100) not in free blocks of 2M or more. One zone: the node's score."""
    total, pages, suitable = fill_contig_page_info(s, COMPACTION_HPAGE_ORDER)
    if pages == 0:
        return 0
    return ((pages - (suitable << COMPACTION_HPAGE_ORDER)) * 100) // pages


@njit
def fragmentation_score_wmark(s, low):
    """fragmentation_score_wmark: low = 100 - proactiveness (at least 5), high = low + 10."""
    wmark_low = max(100 - s.par[P_COMPACT_PROACTIVENESS], 5)
    return wmark_low if low else min(wmark_low + 10, 100)


# --- deferral ------------------------------------------------------------------------


@njit
def defer_compaction(s, order):
    s.var[V_COMPACT_CONSIDERED] = 0
    s.var[V_COMPACT_DEFER_SHIFT] = min(s.var[V_COMPACT_DEFER_SHIFT] + 1, COMPACT_MAX_DEFER_SHIFT)
    if order < s.var[V_COMPACT_ORDER_FAILED]:
        s.var[V_COMPACT_ORDER_FAILED] = order


@njit
def compaction_deferred(s, order):
    """True if compaction for this order is skipped this time (counts the attempt)."""
    if order < s.var[V_COMPACT_ORDER_FAILED]:
        return False
    limit = np.int64(1) << s.var[V_COMPACT_DEFER_SHIFT]
    s.var[V_COMPACT_CONSIDERED] += 1
    if s.var[V_COMPACT_CONSIDERED] >= limit:
        s.var[V_COMPACT_CONSIDERED] = limit
        return False
    return True


@njit
def compaction_defer_reset(s, order, alloc_success):
    if alloc_success:
        s.var[V_COMPACT_CONSIDERED] = 0
        s.var[V_COMPACT_DEFER_SHIFT] = 0
    if order >= s.var[V_COMPACT_ORDER_FAILED]:
        s.var[V_COMPACT_ORDER_FAILED] = order + 1


# --- suitability ---------------------------------------------------------------------


@njit
def compact_finished_order(s, order, mt):
    """The part of __compact_finished that ends a run: a free block of >= order on the
    migratetype's list, or one an allocation would claim from a fallback list."""
    for o in range(order, MAX_PAGE_ORDER + 1):
        if s.nr_free[o, mt] > 0:
            return True
        if mt < MIGRATE_PCPTYPES and find_suitable_fallback(s, o, mt, True) >= 0:
            return True
    return False


@njit
def compaction_suitable(s, order, mt):
    """compaction_suitable (6.1): COMPACT_SUCCESS if the allocation would succeed now at the
    min watermark (zone_watermark_ok: a free block of >= order on any list), COMPACT_SKIPPED
    when free pages are not above the order-0 mark + compact_gap (the low mark for costly
    orders) or when a costly order fails for lack of memory rather than fragmentation
    (fragmentation_index <= extfrag_threshold: COMPACT_NOT_SUITABLE_ZONE in the tracepoint,
    returned as COMPACT_SKIPPED), else COMPACT_CONTINUE."""
    wmark = s.par[P_WMARK_MIN]
    if zone_watermark_ok(s, order, wmark):
        return COMPACT_SUCCESS
    gap_mark = s.par[P_WMARK_LOW] if order > PAGE_ALLOC_COSTLY_ORDER else wmark
    if s.ctr[C_NR_FREE] <= gap_mark + (2 << order):  # compact_gap(order)
        return COMPACT_SKIPPED
    if order > PAGE_ALLOC_COSTLY_ORDER:
        fi = fragmentation_index(s, order)
        if 0 <= fi <= s.par[P_EXTFRAG_THRESHOLD]:
            return COMPACT_SKIPPED
    return COMPACT_CONTINUE


@njit
def suitable_migration_source(s, pb, mt, mode):
    """suitable_migration_source: async direct compaction only scans pageblocks of the
    request's migratetype (is_migrate_movable for a movable request: MIGRATE_MOVABLE, there
    being no CMA in the model); sync scans all."""
    return mode != MODE_ASYNC or s.pb_mt[pb] == mt


@njit
def suitable_migration_target(s, pb, order):
    """suitable_migration_target: not a pageblock that starts with a free block of the
    order compaction is after; a MIGRATE_MOVABLE pageblock."""
    start = pb << PAGEBLOCK_ORDER
    f = s.pg_flags[start]
    if (f & (PG_BUDDY | PG_CACHE)) == PG_BUDDY and s.pg_order[start] >= order:
        return False
    return s.pb_mt[pb] == MIGRATE_MOVABLE


@njit
def pageblock_is_hole(s, pb):
    """A pageblock with no RAM at either end (pfn_valid / pageblock_pfn_to_page)."""
    start = pb << PAGEBLOCK_ORDER
    return (s.pg_flags[start] & PG_HOLE) != 0 and (s.pg_flags[start + PAGEBLOCK_NR_PAGES - 1] & PG_HOLE) != 0


@njit
def pages_have_prot(s, pfn, n, prot):
    for i in range(n):
        if s.prot[pfn + i] != prot:
            return False
    return True


# --- migration (mm/migrate.c) ----------------------------------------------------------


@njit
def migrate_block(s, src, dst, order):
    """migrate_pages for one block: the free block at dst (off the free lists) becomes the
    allocated block, the owner follows, the source is freed. The direct map is not touched."""
    set_block_head(s, dst, (s.pg_flags[dst] & (0xFF ^ (PG_BUDDY | PG_PCP))) | PG_ALLOC, order, MIGRATE_MOVABLE)
    owner = s.pg_owner[src]
    s.pg_owner[dst] = owner
    s.pg_owner[src] = NIL
    if owner != NIL:
        s.alloc_pfn[owner] = dst
    if s.var[V_MIG_LOG_ON] != 0:
        n = s.var[V_MIG_LOG_N]
        if n < s.mig_log.shape[0]:
            s.mig_log[n, 0] = src
            s.mig_log[n, 1] = dst
        s.var[V_MIG_LOG_N] = n + 1
    set_head_flags(s, src, s.pg_flags[src] & (0xFF ^ PG_ALLOC))
    __free_one_page(s, src, order, s.pb_mt[src >> PAGEBLOCK_ORDER], False)
    s.ctr[C_PGMIGRATE_SUCCESS] += 1 << order
    s.ctr[C_COMPACT_ISOLATED] += 2 << order  # the source and its target


@njit
def compaction_alloc(s, order, cc_order, mblock):
    """compaction_alloc / isolate_freepages: a free block of `order` for a migration target,
    from the free scanner's pageblock (V_COMPACT_FREE_PB) at its cursor (V_COMPACT_FREE_CURSOR),
    moving down while the pageblock is above the migrate scanner's. A larger free block is
    split (its upper parts back to the free lists, where the scanner finds them next).
    Returns the pfn, or NO_PAGE when the scanners meet."""
    while s.var[V_COMPACT_FREE_PB] > mblock:
        fb = s.var[V_COMPACT_FREE_PB]
        start = fb << PAGEBLOCK_ORDER
        if s.var[V_COMPACT_FREE_CURSOR] == NO_PAGE:
            if pageblock_is_hole(s, fb) or not suitable_migration_target(s, fb, cc_order):
                s.var[V_COMPACT_FREE_PB] = fb - 1
                continue
            s.var[V_COMPACT_FREE_CURSOR] = start
        end = start + PAGEBLOCK_NR_PAGES
        pfn = s.var[V_COMPACT_FREE_CURSOR]
        scanned = 0
        found = NO_PAGE
        while pfn < end:
            scanned += 1
            f = s.pg_flags[pfn]
            if (f & (PG_BUDDY | PG_CACHE)) == PG_BUDDY:
                bo = np.int64(s.pg_order[pfn])
                if bo >= order and pages_have_prot(s, pfn, 1 << order, PAGE_KERNEL):
                    found = pfn
                    bmt = s.pg_mt[pfn]
                    del_from_free_list(s, pfn, bo, bmt)
                    expand(s, pfn, order, bo, bmt, False)
                    pfn += 1 << order
                    break
                pfn += 1 << bo
            elif f & (PG_ALLOC | PG_BUDDY):
                pfn += 1 << np.int64(s.pg_order[pfn])
            else:
                pfn += 1
        s.ctr[C_COMPACT_FREE_SCANNED] += scanned
        if found >= 0:
            s.var[V_COMPACT_FREE_CURSOR] = pfn
            return found
        s.var[V_COMPACT_FREE_PB] = fb - 1
        s.var[V_COMPACT_FREE_CURSOR] = NO_PAGE
    return NO_PAGE


@njit
def isolate_migratepages_block(s, mblock, cc_order):
    """isolate_migratepages_block + migrate_pages over one pageblock: every allocated,
    movable, uncached block below the request's order (skip_isolation_on_order: a larger one
    would not help) and below pageblock_order, whose pages are PAGE_KERNEL, moves to a target
    from the free scanner. Returns False when the free scanner met this pageblock."""
    pfn = mblock << PAGEBLOCK_ORDER
    end = pfn + PAGEBLOCK_NR_PAGES
    scanned = 0
    ok = True
    while pfn < end:
        scanned += 1
        f = s.pg_flags[pfn]
        if f & (PG_ALLOC | PG_BUDDY):
            o = np.int64(s.pg_order[pfn])
            if (f & (PG_ALLOC | PG_CACHE)) == PG_ALLOC and s.pg_mt[pfn] == MIGRATE_MOVABLE \
                    and o < min(cc_order, PAGEBLOCK_ORDER):
                if not pages_have_prot(s, pfn, 1 << o, PAGE_KERNEL):
                    s.ctr[C_PGMIGRATE_FAIL] += 1 << o  # a set_memory_* target: not migratable
                else:
                    dst = compaction_alloc(s, o, cc_order, mblock)
                    if dst < 0:
                        ok = False
                        break
                    migrate_block(s, pfn, dst, o)
            pfn += 1 << o
        else:
            pfn += 1
    s.ctr[C_COMPACT_MIGRATE_SCANNED] += scanned
    return ok


@njit
def compact_zone(s, order, mt, mode):
    """compact_zone for one order (ORDER_PROACTIVE: the whole zone until the fragmentation
    score is at most the low mark). Returns a COMPACT_* result."""
    if mode != MODE_PROACTIVE:
        ret = compaction_suitable(s, order, mt)
        if ret != COMPACT_CONTINUE:
            return ret
    nr_pb = s.par[P_NR_PAGES] >> PAGEBLOCK_ORDER
    mblock = s.var[V_COMPACT_MIGRATE_PFN] >> PAGEBLOCK_ORDER
    whole_zone = mblock == 0 or mode == MODE_PROACTIVE  # cc->whole_zone
    s.var[V_COMPACT_FREE_PB] = nr_pb - 1 - s.var[V_COMPACT_FREE_PB_FROM_END]
    s.var[V_COMPACT_FREE_CURSOR] = NO_PAGE
    cc_order = order if order > 0 else PAGEBLOCK_ORDER
    wmark_low = fragmentation_score_wmark(s, True)
    ret = COMPACT_CONTINUE
    while True:
        if mblock >= s.var[V_COMPACT_FREE_PB]:
            ret = COMPACT_COMPLETE
            break
        if (fragmentation_score_zone(s) <= wmark_low if mode == MODE_PROACTIVE
                else compact_finished_order(s, order, mt)):
            ret = COMPACT_SUCCESS
            break
        if not pageblock_is_hole(s, mblock) and suitable_migration_source(s, mblock, mt, mode):
            if not isolate_migratepages_block(s, mblock, cc_order):
                ret = COMPACT_COMPLETE
                break
        mblock += 1
    if ret == COMPACT_COMPLETE:  # scanners met: start over next time (reset_cached_positions)
        s.var[V_COMPACT_MIGRATE_PFN] = 0
        s.var[V_COMPACT_FREE_PB_FROM_END] = 0
        if not whole_zone:  # __compact_finished
            ret = COMPACT_PARTIAL_SKIPPED
    else:
        s.var[V_COMPACT_MIGRATE_PFN] = mblock << PAGEBLOCK_ORDER
        s.var[V_COMPACT_FREE_PB_FROM_END] = nr_pb - 1 - s.var[V_COMPACT_FREE_PB]
    return ret


@njit
def update_deferral(s, order, status):
    """try_to_compact_pages after compact_zone: a success resets the order's deferral, the
    scanners meeting (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED) defer it."""
    if status == COMPACT_SUCCESS:
        compaction_defer_reset(s, order, False)
    elif status == COMPACT_COMPLETE or status == COMPACT_PARTIAL_SKIPPED:
        defer_compaction(s, order)


@njit
def try_to_compact_pages(s, order, mt, mode):
    """try_to_compact_pages for the one zone: deferral, compact_zone, deferral update."""
    if compaction_deferred(s, order):
        return COMPACT_DEFERRED
    status = compact_zone(s, order, mt, mode)
    update_deferral(s, order, status)
    return status


# --- triggers ------------------------------------------------------------------------


@njit
def __alloc_pages_direct_compact(s, order, mt, cpu, mode):
    """__alloc_pages_direct_compact: compact, then retry the free lists at the min
    watermark. compact_stall unless skipped; compact_success / compact_fail by the retry.
    Costly orders only (> PAGE_ALLOC_COSTLY_ORDER), THP order 9 included."""
    if s.par[P_COMPACTION] == 0 or order <= PAGE_ALLOC_COSTLY_ORDER:
        return NO_PAGE
    status = try_to_compact_pages(s, order, mt, mode)
    if status == COMPACT_SKIPPED:
        return NO_PAGE
    s.ctr[C_COMPACT_STALL] += 1
    pfn = get_page_from_freelist_call(s, order, mt, cpu, ALLOC_WMARK_MIN)
    if pfn != NO_PAGE:
        compaction_defer_reset(s, order, True)
        s.ctr[C_COMPACT_SUCCESS] += 1
    else:
        s.ctr[C_COMPACT_FAIL] += 1
    return pfn


@njit
def direct_compact_for_block(s, order, mt, mode):
    """Direct compaction for a caller that takes a free block itself rather than through
    get_page_from_freelist (the MIGRATE_UNMAPPED pageblock conversion): True if a block of
    the order is free for mt afterwards. Counted as __alloc_pages_direct_compact counts."""
    if s.par[P_COMPACTION] == 0:
        return False
    status = try_to_compact_pages(s, order, mt, mode)
    if status == COMPACT_SKIPPED:
        return False
    s.ctr[C_COMPACT_STALL] += 1
    if compact_finished_order(s, order, mt):
        compaction_defer_reset(s, order, True)
        s.ctr[C_COMPACT_SUCCESS] += 1
        return True
    s.ctr[C_COMPACT_FAIL] += 1
    return False


@njit
def wakeup_kcompactd(s, order):
    """kswapd woke kcompactd for an order > 0 (kcompactd_do_work, MIGRATE_SYNC_LIGHT,
    GFP_KERNEL's migratetype)."""
    if s.par[P_COMPACTION] == 0 or order <= 0:
        return
    s.ctr[C_COMPACT_DAEMON_WAKE] += 1
    try_to_compact_pages(s, order, MIGRATE_UNMOVABLE, MODE_SYNC)


@njit
def kcompactd_proactive(s, t_us):
    """kcompactd's timer (every HPAGE_FRAG_CHECK_INTERVAL_MSEC): proactive compaction when
    the fragmentation score is above the high mark (should_proactive_compact_node); if the
    score did not drop, wait 64 intervals (COMPACT_MAX_DEFER_SHIFT)."""
    interval = HPAGE_FRAG_CHECK_INTERVAL_US
    if s.par[P_COMPACT_PROACTIVENESS] > 0:
        score = fragmentation_score_zone(s)
        if score > fragmentation_score_wmark(s, False):
            s.ctr[C_COMPACT_DAEMON_WAKE] += 1
            compact_zone(s, ORDER_PROACTIVE, MIGRATE_MOVABLE, MODE_PROACTIVE)
            if fragmentation_score_zone(s) >= score:
                interval = HPAGE_FRAG_CHECK_INTERVAL_US << COMPACT_MAX_DEFER_SHIFT
    s.var[V_PROACTIVE_NEXT_US] = t_us + interval


@njit_inline
def compaction_tick(s, t_us):
    """Checked on each event (inlined: a call passes every array of the state): kcompactd's
    proactive timer, when compaction is on."""
    if s.par[P_COMPACTION] != 0 and t_us >= s.var[V_PROACTIVE_NEXT_US]:
        kcompactd_proactive(s, t_us)
