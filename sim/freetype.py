"""The 2026 ALLOC_UNMAPPED design: freetypes (Brendan Jackman, "mm: Add __GFP_UNMAPPED", RFC
00/19 of 25 Feb 2026, v2; v3/v4 as `ALLOC_UNMAPPED`), compiled with numba.

A freetype is a migratetype plus flags; FREETYPE_UNMAPPED exists only for MIGRATE_UNMOVABLE, so
it adds one set of free lists per order. The model keeps {MIGRATE_UNMOVABLE, FREETYPE_UNMAPPED}
in the zone's free-list index 3 (MIGRATE_UNMAPPED, which only the 2022 `migratetype` policy
uses otherwise), and the per-pageblock UNMAPPED flag as pb_mt == 3: an unmapped pageblock is
always unmovable, and nothing else ever sets or clears that value under this policy (claim and
steal never see index 3: fallback_mt has no entry for it, and __rmqueue returns for
mt >= MIGRATE_PCPTYPES), so "a migratetype change never changes the flag" holds.
Per-CPU lists: pcp_head gets a 4th column for unmapped order-0 pages (freetype_state).

- Normal path (get_page_from_freelist): per-CPU lists, then __rmqueue of the same freetype.
  An unmapped request never claims or steals mapped free lists there.
- __rmqueue_direct_map, where the kernel calls it: in rmqueue_buddy when __rmqueue failed
  (page_alloc.rmqueue calls rmqueue_direct_map; a per-CPU refill, rmqueue_bulk, never does). Take
  max(order, pageblock_order) from the opposite flag through __rmqueue (claim and steal apply
  for mapped -> unmapped), set_direct_map_valid_noflush on the whole block (aligned 2M leaves
  change in place; a 1G leaf around them splits once), set the flag on each pageblock, and
  expand() the rest onto the new freetype's lists. Unmapping costs one flush_tlb_kernel_range
  over the block; remapping (mapped unmovable requests only: movable / reclaimable never remap)
  costs no flush but zeroes the block. Nothing is collapsed back.
- Free path: pages go back to their pageblock's freetype (__free_pages reads pb_mt), so unmapped
  pages stay unmapped; buddy_merge joins pageblocks only with equal flags.
- v4 (policy.version=4, the default): an unmapped allocation whose fast path and min-watermark
  retry failed direct-compacts before it gives up (__alloc_pages_slowpath), for any order: at
  max(order, pageblock_order), since __rmqueue_direct_map needs a free pageblock. v3 does not
  compact for them (the caller reclaims once and retries). Counted as direct compaction
  (compact_stall, compact_success / compact_fail, pgmigrate_success).
Not modelled: the retry in claim mode of later versions; the split's page-table page never
remaps a block (alloc_pgtable_page uses the mapped lists and the reserves).
"""
import numpy as np

from .buddy import expand, set_pageblock_range
from .cache import cache_held_add
from .compaction import MODE_SYNC, direct_compact_for_block
from .constants import MAX_PAGE_ORDER, MIGRATE_UNMAPPED, MIGRATE_UNMOVABLE, PAGEBLOCK_ORDER, PROT_PRESENT
from .directmap import change_page_attr, flush_tlb_kernel_range
from .jit import njit
from .layout import (
    C_CACHE_HITS, C_CACHE_MISSES, C_FT_REMAPS, C_FT_UNMAPS, C_FT_ZEROED, CPA_OK, NIL, NO_PAGE,
    P_FT_DIRECT_COMPACT, V_CPU,
)
from .page_alloc import (
    ALLOC_WMARK_LOW, ALLOC_WMARK_MIN, __alloc_pages_slowpath, __free_one_page, __rmqueue, __rmqueue_smallest,
    get_page_from_freelist_call,
)

FREETYPE_UNMAPPED = MIGRATE_UNMAPPED  # free-list index of {MIGRATE_UNMOVABLE, FREETYPE_UNMAPPED}


def freetype_state(s, policy_name: str):
    """Separate per-CPU lists for unmapped pages: a 4th pcp column under freetype."""
    if policy_name != "freetype" or s.pcp_head.shape[1] > FREETYPE_UNMAPPED:
        return s
    ncpus, old = s.pcp_head.shape
    head = np.full((ncpus, FREETYPE_UNMAPPED + 1), NIL, np.int32)
    tail = np.full((ncpus, FREETYPE_UNMAPPED + 1), NIL, np.int32)
    head[:, :old], tail[:, :old] = s.pcp_head, s.pcp_tail  # the pages the boot left on the lists
    return s._replace(pcp_head=head, pcp_tail=tail)


@njit
def set_direct_map_valid_noflush(s, pfn, numpages, valid):
    """set_direct_map_valid_noflush: _PAGE_PRESENT set (valid) or cleared, no flush."""
    if valid:
        return change_page_attr(s, pfn, numpages, PROT_PRESENT, 0, False)
    return change_page_attr(s, pfn, numpages, 0, PROT_PRESENT, False)


@njit
def __rmqueue_direct_map(s, order, ft):
    """Convert max(order, pageblock_order) of the opposite flag to freetype `ft`
    (FREETYPE_UNMAPPED or MIGRATE_UNMOVABLE) and return the first `order` of it, the rest on
    ft's lists. Returns NO_PAGE when the opposite flag has no such block."""
    o = max(order, PAGEBLOCK_ORDER)
    if o > MAX_PAGE_ORDER:
        return NO_PAGE
    unmap = ft == FREETYPE_UNMAPPED
    if unmap:
        pfn = __rmqueue(s, o, MIGRATE_UNMOVABLE, False)  # __rmqueue: smallest, claim, steal
    else:
        pfn = __rmqueue_smallest(s, o, FREETYPE_UNMAPPED)  # v3/v4: only unmovable has unmapped lists
    if pfn < 0:
        return NO_PAGE
    n = 1 << o
    if set_direct_map_valid_noflush(s, pfn, n, not unmap) != CPA_OK:  # the 1G split found no page table
        __free_one_page(s, pfn, o, s.pb_mt[pfn >> PAGEBLOCK_ORDER], True)
        return NO_PAGE
    set_pageblock_range(s, pfn, o, ft)
    if unmap:
        flush_tlb_kernel_range(s, n)  # one flush for the whole conversion
        s.ctr[C_FT_UNMAPS] += 1
        cache_held_add(s, n)
    else:
        s.ctr[C_FT_REMAPS] += 1
        s.ctr[C_FT_ZEROED] += n  # the unmapped memory is zeroed before it is mapped again
        cache_held_add(s, -n)
    expand(s, pfn, order, o, ft, False)
    return pfn


@njit
def rmqueue_direct_map(s, order, mt):
    """rmqueue_buddy after __rmqueue failed (page_alloc.rmqueue): __rmqueue_direct_map for the
    freetypes that have an opposite flag. v3/v4 have unmapped lists for MIGRATE_UNMOVABLE only,
    so a movable or reclaimable request never remaps."""
    if mt == FREETYPE_UNMAPPED or mt == MIGRATE_UNMOVABLE:
        return __rmqueue_direct_map(s, order, mt)
    return NO_PAGE


@njit
def freetype_alloc(s, order):
    """An unmapped (ALLOC_UNMAPPED) unmovable request, through the page allocator: the fast path
    at the low watermark (per-CPU list, own free lists, else __rmqueue_direct_map converts
    mapped pageblocks), the slow path's min-watermark retry and per-CPU drain; then (v4) direct
    compaction for a free pageblock and a retry. Reclaim is the caller's (alloc_unmapped)."""
    unmaps = s.ctr[C_FT_UNMAPS]
    cpu = s.var[V_CPU]
    pfn = get_page_from_freelist_call(s, order, FREETYPE_UNMAPPED, cpu, ALLOC_WMARK_LOW)
    if pfn == NO_PAGE:
        pfn = __alloc_pages_slowpath(s, order, FREETYPE_UNMAPPED, cpu, ALLOC_WMARK_LOW)
    if pfn == NO_PAGE and s.par[P_FT_DIRECT_COMPACT] != 0:
        # v4: __alloc_pages_direct_compact for any order of an unmapped allocation; a pageblock
        # is what __rmqueue_direct_map takes (sync-light: an async run for an unmovable request
        # would only scan unmovable pageblocks)
        if direct_compact_for_block(s, max(order, PAGEBLOCK_ORDER), MIGRATE_UNMOVABLE, MODE_SYNC):
            pfn = get_page_from_freelist_call(s, order, FREETYPE_UNMAPPED, cpu, ALLOC_WMARK_MIN)
    if pfn != NO_PAGE and s.ctr[C_FT_UNMAPS] == unmaps:
        s.ctr[C_CACHE_HITS] += 1  # served from the unmapped freetype's own lists
    else:
        s.ctr[C_CACHE_MISSES] += 1
    return pfn


@njit
def freetype_free_pages(s):
    """Free unmapped pages: the unmapped free lists and the per-CPU unmapped lists (pure)."""
    free = 0
    for o in range(MAX_PAGE_ORDER + 1):
        free += s.nr_free[o, FREETYPE_UNMAPPED] << o
    if s.pcp_head.shape[1] > FREETYPE_UNMAPPED:
        for cpu in range(s.pcp_head.shape[0]):
            pfn = s.pcp_head[cpu, FREETYPE_UNMAPPED]
            while pfn >= 0:
                free += 1
                pfn = s.pg_next[pfn]
    return free
