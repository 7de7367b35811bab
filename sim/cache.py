"""A cache of 2M blocks next to the page allocator (the 2023 `unmapped_alloc()` RFC),
compiled with numba. Also the engine of the grouped-pages cache and the code packs.

Blocks come from the page allocator (order 9; lower orders on fallback), get one
direct-map change for the whole block (a PMD-mapped block is updated in place, not
split), and serve requests of order 0..9 from an internal buddy allocator whose free
lists (cache_head/cache_tail/cache_nr) link pages through pg_next/pg_prev. A free block
head in the cache carries PG_BUDDY | PG_CACHE, an allocated one PG_ALLOC | PG_CACHE.
The shrinker restores the direct map of free cached memory and frees it to the page
allocator: whole free 2M blocks (`2m`) or one 4K page at a time (`4k`, as the RFC).
"""
from .constants import (
    MIGRATE_UNMOVABLE, PAGE_KERNEL, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_ALLOC, PG_BUDDY, PG_CACHE, PROT_PKEY,
    PROT_PRESENT, PROT_RW,
)
from .buddy import CACHE_MAX_ORDER, buddy_merge, cache_add, cache_del, expand
from .compaction import MODE_SYNC, __alloc_pages_direct_compact
from .directmap import change_page_attr, collapse_large_pages, flush_tlb_all, flush_tlb_kernel_range
from .jit import njit
from .page_alloc import ALLOC_WMARK_MIN, __alloc_pages_noreclaim, __free_pages
from .pollution import set_block_head, set_head_flags
from .layout import (
    AT_LIMIT, NIL, NO_PAGE, C_CACHE_BLOCKS, C_CACHE_FREE, C_CACHE_HELD, C_CACHE_HITS, C_CACHE_MISSES, C_CACHE_PEAK,
    C_CACHE_REFILL_2M, C_CACHE_REFILL_LOW, C_CACHE_RELEASED, C_CACHE_USED, C_SHRINK_RUNS,
    P_CACHE_BUDDY, P_CACHE_COLLAPSE, P_CACHE_FALLBACK_ORDERS, P_CACHE_MASK_CLR, P_CACHE_MASK_SET,
    P_CACHE_RELEASE_2M, P_CACHE_RELEASE_EMPTY, P_CACHE_RESET_RELEASE, P_SHRINK_BATCH,
    P_SHRINK_KEEP, V_CPU,
)


@njit
def cache_held_add(s, delta):
    s.ctr[C_CACHE_HELD] += delta
    s.ctr[C_CACHE_BLOCKS] = (s.ctr[C_CACHE_HELD] + PAGEBLOCK_NR_PAGES - 1) >> PAGEBLOCK_ORDER
    if s.ctr[C_CACHE_HELD] > s.ctr[C_CACHE_PEAK]:
        s.ctr[C_CACHE_PEAK] = s.ctr[C_CACHE_HELD]


@njit
def cache_flush_change(s, n):
    """The flush after the cache changed a block's direct map: an unmapped cache unmaps with
    set_direct_map_invalid_noflush and flushes the block once (flush_tlb_kernel_range); a
    code pack is set_memory_rox on a vmalloc address, whose alias forces flush_tlb_all."""
    if s.par[P_CACHE_MASK_CLR] & PROT_PRESENT:
        flush_tlb_kernel_range(s, n)
    else:
        flush_tlb_all(s)


@njit
def cache_free_one(s, pfn, order):
    """Return a block to the cache: merge with free buddies inside the cache (up to a 2M
    block), or, for a list of 4K pages (grouped pages), add each page on its own.
    A code pack (prog_pack / execmem) gives a block back once it is entirely free."""
    if s.par[P_CACHE_BUDDY] == 0:
        for i in range(1 << order):
            cache_add(s, pfn + i, 0, False)
        return
    pfn, order = buddy_merge(s, pfn, order, MIGRATE_UNMOVABLE, True)
    cache_add(s, pfn, order, False)
    if order == CACHE_MAX_ORDER and s.par[P_CACHE_RELEASE_EMPTY] != 0:
        cache_del(s, pfn, order)
        release_block(s, pfn, order)


@njit
def cache_rmqueue(s, order):
    """__rmqueue_smallest + expand over the cache's free lists."""
    for current in range(order, CACHE_MAX_ORDER + 1):
        pfn = s.cache_head[current, 0]
        if pfn == NIL:
            continue
        cache_del(s, pfn, current)
        expand(s, pfn, order, current, MIGRATE_UNMOVABLE, True)
        return pfn
    return NO_PAGE


@njit
def cache_refill(s, order):
    """unmapped_alloc refill: a 2M block from the page allocator (or, when allowed, the
    largest lower order down to the request), its direct map changed as one range.
    With compaction on, a failed 2M attempt direct-compacts (sync, as alloc_pages' slow path
    for a costly order does on retry) and tries once more before taking lower orders."""
    lowest = order if s.par[P_CACHE_FALLBACK_ORDERS] != 0 else CACHE_MAX_ORDER
    for o in range(CACHE_MAX_ORDER, lowest - 1, -1):
        pfn = __alloc_pages_noreclaim(s, o, MIGRATE_UNMOVABLE, s.var[V_CPU], ALLOC_WMARK_MIN)
        if pfn == NO_PAGE and o == CACHE_MAX_ORDER:
            pfn = __alloc_pages_direct_compact(s, o, MIGRATE_UNMOVABLE, s.var[V_CPU], MODE_SYNC)
        if pfn == NO_PAGE:
            continue
        set_head_flags(s, pfn, s.pg_flags[pfn] & (0xFF ^ PG_ALLOC))
        if change_page_attr(s, pfn, 1 << o, s.par[P_CACHE_MASK_SET], s.par[P_CACHE_MASK_CLR], False) != 0:
            set_head_flags(s, pfn, s.pg_flags[pfn] | PG_ALLOC)
            __free_pages(s, pfn, o, s.var[V_CPU])
            return False
        cache_flush_change(s, 1 << o)
        s.ctr[C_CACHE_REFILL_2M if o == CACHE_MAX_ORDER else C_CACHE_REFILL_LOW] += 1
        cache_held_add(s, 1 << o)
        if s.par[P_CACHE_BUDDY] == 0:
            for i in range(1 << o):
                cache_add(s, pfn + i, 0, True)
        else:
            cache_add(s, pfn, o, True)
        return True
    return False


@njit
def cache_alloc(s, order, max_pages):
    """Serve one request from the cache. Returns the pfn, NO_PAGE when the page allocator
    cannot refill the cache, AT_LIMIT when the cache is at its size limit (the caller falls
    back to today's behaviour)."""
    pfn = cache_rmqueue(s, order)
    if pfn >= 0:
        s.ctr[C_CACHE_HITS] += 1
    else:
        s.ctr[C_CACHE_MISSES] += 1
        if max_pages > 0 and s.ctr[C_CACHE_HELD] + (1 << CACHE_MAX_ORDER) > max_pages:
            return AT_LIMIT
        if not cache_refill(s, order):
            return NO_PAGE
        pfn = cache_rmqueue(s, order)
        if pfn == NO_PAGE:
            return NO_PAGE
    set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ PG_BUDDY)) | PG_ALLOC | PG_CACHE, order, MIGRATE_UNMOVABLE)
    s.ctr[C_CACHE_USED] += 1 << order
    return pfn


@njit
def cache_free(s, pfn, order):
    """Free a block that came from the cache: back into the cache."""
    set_head_flags(s, pfn, s.pg_flags[pfn] & (0xFF ^ (PG_ALLOC | PG_CACHE)))
    s.ctr[C_CACHE_USED] -= 1 << order
    cache_free_one(s, pfn, order)


@njit
def cache_capture(s, pfn, order):
    """Take a freed block whose direct map is already at PTE level into the cache."""
    change_page_attr(s, pfn, 1 << order, s.par[P_CACHE_MASK_SET], s.par[P_CACHE_MASK_CLR], False)
    cache_flush_change(s, 1 << order)
    cache_held_add(s, 1 << order)
    set_head_flags(s, pfn, s.pg_flags[pfn] & (0xFF ^ PG_ALLOC))
    cache_free_one(s, pfn, order)


@njit
def restore_and_free_4k(s, pfn):
    """Release one 4K page: restore its direct map (set_direct_map_default_noflush, which
    splits a PMD-mapped block) and free it to the page allocator."""
    if s.par[P_CACHE_RESET_RELEASE] != 0:  # vfree of VM_FLUSH_RESET_PERMS memory
        change_page_attr(s, pfn, 1, 0, PROT_PRESENT | PROT_RW, False)
    change_page_attr(s, pfn, 1, PAGE_KERNEL, PROT_PKEY, False)
    set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ (PG_BUDDY | PG_CACHE))) | PG_ALLOC, 0, s.pg_mt[pfn])
    __free_pages(s, pfn, 0, s.var[V_CPU])


@njit
def release_flush(s, n):
    """A release's flush: a code pack is freed through vm_reset_perms (module_memfree /
    execmem's vfree of a VM_FLUSH_RESET_PERMS area): one flush over the area; an unmapped
    cache restores with set_direct_map_default_noflush, which needs no flush."""
    if s.par[P_CACHE_RESET_RELEASE] != 0 or (s.par[P_CACHE_MASK_CLR] & PROT_PRESENT) == 0:
        flush_tlb_kernel_range(s, n)


@njit
def release_block(s, pfn, order):
    """Give a free block (already off the cache lists) back to the page allocator."""
    n = 1 << order
    cache_held_add(s, -n)
    s.ctr[C_CACHE_RELEASED] += n
    release_flush(s, n)
    if s.par[P_CACHE_RELEASE_2M] != 0 and s.par[P_CACHE_RESET_RELEASE] == 0:
        change_page_attr(s, pfn, n, PAGE_KERNEL, PROT_PKEY, False)  # one range: in place
        if s.par[P_CACHE_COLLAPSE] != 0:
            collapse_large_pages(s, pfn, n)
        set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ (PG_BUDDY | PG_CACHE))) | PG_ALLOC, order, s.pg_mt[pfn])
        __free_pages(s, pfn, order, s.var[V_CPU])
    else:
        for i in range(n):
            restore_and_free_4k(s, pfn + i)
        if s.par[P_CACHE_COLLAPSE] != 0:
            collapse_large_pages(s, pfn, n)


@njit
def cache_shrink(s, nr_to_scan):
    """The shrinker: release free cached memory above the low threshold (P_SHRINK_KEEP),
    at most nr_to_scan pages (<= 0: P_SHRINK_BATCH, 0 there: no limit). `2m` releases
    whole free 2M blocks; `4k` releases page by page from the largest free blocks."""
    keep = s.par[P_SHRINK_KEEP]
    budget = nr_to_scan if nr_to_scan > 0 else s.par[P_SHRINK_BATCH]
    if s.ctr[C_CACHE_FREE] <= keep:
        return 0
    s.ctr[C_SHRINK_RUNS] += 1
    released = 0
    if s.par[P_CACHE_RELEASE_2M] != 0:
        n = 1 << CACHE_MAX_ORDER
        while s.cache_head[CACHE_MAX_ORDER, 0] != NIL and s.ctr[C_CACHE_FREE] - n >= keep \
                and (budget <= 0 or released + n <= budget):
            pfn = s.cache_head[CACHE_MAX_ORDER, 0]
            cache_del(s, pfn, CACHE_MAX_ORDER)
            release_block(s, pfn, CACHE_MAX_ORDER)
            released += n
        return released
    while s.ctr[C_CACHE_FREE] > keep and (budget <= 0 or released < budget):
        order = CACHE_MAX_ORDER
        while order >= 0 and s.cache_head[order, 0] == NIL:
            order -= 1
        if order < 0:
            break
        pfn = s.cache_head[order, 0]
        cache_del(s, pfn, order)
        n = 1 << order
        take = min(n, s.ctr[C_CACHE_FREE] + n - keep)  # >= 1: the loop's condition
        if budget > 0:
            take = min(take, budget - released)
        cache_held_add(s, -take)
        s.ctr[C_CACHE_RELEASED] += take
        release_flush(s, take)
        for i in range(take):
            restore_and_free_4k(s, pfn + i)
        for i in range(take, n):  # the rest goes back, merging again
            cache_free_one(s, pfn + i, 0)
        released += take
    return released
