"""Policies: how __GFP_UNMAPPED users get their pages, and what happens on free.

`policy_alloc` / `policy_free` are the compiled entry points the event loop and the
step API call for such users; `policy_params` turns a PolicyConfig into the state's
parameters. The caches themselves are in cache.py; the 2022 MIGRATE_UNMAPPED design is
below (it lives inside the page allocator's own free lists).
"""
from pathlib import Path

import numpy as np

from .freetype import freetype_alloc, freetype_free_pages
from .cache import cache_alloc, cache_capture, cache_free, cache_held_add, cache_shrink
from .config import ConfigError, PolicyConfig, copy_rows, validate_policy
from .constants import (
    MAP_LEAF, MAP_NONE, MAX_PAGE_ORDER, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMAPPED,
    MIGRATE_UNMOVABLE, PAGE_KERNEL, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_CACHE, PMD_PAGES,
    PROT_PKEY, PROT_PRESENT, PROT_RW, PTRS_PER_PMD, PUD_PAGES,
)
from .compaction import MODE_SYNC, direct_compact_for_block, fragmentation_score_zone
from .directmap import change_page_attr, flush_tlb_kernel_range, split_large_page_1g, split_large_page_2m
from .jit import njit, njit_inline
from .pollution import set_pageblock_mt
from .buddy import add_to_free_list, del_from_free_list, expand, set_pageblock_range
from .page_alloc import __move_freepages_block, __rmqueue_smallest, prep_new_page, zone_watermark_ok
from .layout import (
    C_CACHE_BYPASS, C_CACHE_CAPTURED, C_CACHE_FREE, C_CACHE_HELD, C_CACHE_HITS,
    C_CACHE_LIMIT_FALLBACKS, C_CACHE_MISSES, C_CACHE_REFILL_2M, C_CACHE_RELEASED, C_CACHE_STRANDED,
    C_CACHE_USED, C_FRAG_SCORE, C_NR_FREE, C_SHRINK_RUNS, CODE_PACKS, NIL, NO_PAGE, NOT_SERVED, AT_LIMIT, POLICY_CODES, POL_EXECMEM, POL_FREETYPE, POL_GROUPED, POL_MIGRATETYPE,
    POL_NONE, POL_PROG_PACK, POL_UNMAPPED_CACHE, P_CACHE_BUDDY, P_CACHE_CAPTURE, P_CACHE_COLLAPSE,
    P_CACHE_FALLBACK_ORDERS, P_CACHE_MASK_CLR, P_CACHE_MASK_SET, P_CACHE_MAX_PAGES, P_CACHE_RELEASE_2M,
    P_CACHE_RELEASE_EMPTY, P_CACHE_RESET_RELEASE, P_COMPACTION, P_POLICY, P_SHRINK_BATCH, P_SHRINK_HIGH,
    P_FT_DIRECT_COMPACT, P_SHRINK_INTERVAL_US, P_SHRINK_KEEP, P_SHRINK_ON_RECLAIM, P_SHRINK_WMARK_PCT, P_WMARK_HIGH,
    P_WMARK_MIN, V_SHRINK_NEXT_US,
)

SERVED_PAGES, SERVED_CHUNKS = 1, 2  # served_callers(): pages from the policy, or bpf_prog_pack chunks


def policy_config(name: str = "none", **knobs) -> PolicyConfig:
    """A validated policy config: conf/policy/<name>.yaml with `knobs` on top."""
    from omegaconf import OmegaConf

    from .paths import conf_dir

    if name not in POLICY_CODES:
        raise ConfigError("policy.name", name, "one of " + ", ".join(POLICY_CODES))
    base = OmegaConf.structured(PolicyConfig)
    yaml = Path(conf_dir()) / "policy" / f"{name}.yaml"
    if yaml.is_file():
        base = OmegaConf.merge(base, OmegaConf.load(yaml))
    for k in knobs:
        if k not in base:
            raise ConfigError(f"policy.{k}", knobs[k], "a knob of PolicyConfig: " + ", ".join(base.keys()))
    cfg = OmegaConf.to_object(OmegaConf.merge(base, {"name": name, **knobs}))
    return validate_policy(cfg)


def policy_params(s, p: PolicyConfig) -> None:
    """Write a policy's knobs into the state's settings (and its shrinker's first deadline)."""
    par = s.par
    code = POLICY_CODES[p.name]
    par[P_POLICY] = code
    par[P_CACHE_MAX_PAGES] = p.max_blocks * PAGEBLOCK_NR_PAGES
    packs = code in (POL_PROG_PACK, POL_EXECMEM)
    knobs = not packs and code != POL_GROUPED  # release / refill_lower_orders apply (packs, grouped: fixed)
    par[P_CACHE_RELEASE_2M] = int(code == POL_EXECMEM or (knobs and p.release == "2m"))
    par[P_CACHE_CAPTURE] = int(p.capture_pte_mapped_frees)
    par[P_CACHE_FALLBACK_ORDERS] = int(knobs and p.refill_lower_orders)
    par[P_CACHE_BUDDY] = int(code != POL_GROUPED)
    par[P_CACHE_COLLAPSE] = int(p.collapse)
    par[P_CACHE_RELEASE_EMPTY] = int(packs)
    par[P_CACHE_RESET_RELEASE] = int(code == POL_PROG_PACK)  # module_memfree -> vm_reset_perms
    # code packs: the direct-map alias is RO; __GFP_UNMAPPED: not present in the direct map
    par[P_CACHE_MASK_SET], par[P_CACHE_MASK_CLR] = 0, PROT_RW if packs else PROT_PRESENT | PROT_RW
    par[P_SHRINK_WMARK_PCT] = int(round(p.shrink_below_high_wmark_pct))
    par[P_SHRINK_HIGH] = p.shrink_above_free_pages
    par[P_SHRINK_INTERVAL_US] = int(round(p.shrink_interval_ms * 1000))
    s.var[V_SHRINK_NEXT_US] = par[P_SHRINK_INTERVAL_US]
    par[P_SHRINK_KEEP] = p.keep_free_pages
    par[P_SHRINK_BATCH] = p.batch_pages
    par[P_SHRINK_ON_RECLAIM] = int(p.shrink_on_reclaim)
    par[P_FT_DIRECT_COMPACT] = int(code == POL_FREETYPE and p.version >= 4)


def served_callers(sc) -> np.ndarray:
    """Per caller (in workload order): whether the policy serves its __GFP_UNMAPPED
    requests (0), with pages (SERVED_PAGES) or with bpf_prog_pack chunks (SERVED_CHUNKS)."""
    kinds = CODE_PACKS.get(sc.policy.name)  # code packs serve code callers; BPF images in chunks
    out = [0 if not (c.unmapped and (kinds is None or c.kind in kinds))
           else SERVED_CHUNKS if kinds is not None and c.kind == "bpf" else SERVED_PAGES
           for c in sc.workload.callers.values()]
    out += [0] * len(copy_rows(sc.workload))  # load copies: plain vmalloc buffers (workload.callers_table)
    return np.array(out or [0], np.uint8)


# --- the 2022 MIGRATE_UNMAPPED pageblock type ----------------------------------------


@njit
def split_to_4k(s, pfn):
    """set_memory_4k on one 2M region: split its 1G and 2M mappings as needed."""
    g = pfn // PUD_PAGES
    if s.pud_map[g] == MAP_LEAF:
        split_large_page_1g(s, g)
    m = pfn // PMD_PAGES
    if s.pmd_map[m] == MAP_LEAF and s.pud_map[g] != MAP_LEAF:
        split_large_page_2m(s, m)


@njit
def has_free_pageblock(s):
    for order in range(PAGEBLOCK_ORDER, MAX_PAGE_ORDER + 1):
        for fmt in (MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE):
            if s.nr_free[order, fmt] > 0:
                return True
    return False


@njit
def claim_unmapped_pageblock(s):
    """No free MIGRATE_UNMAPPED page: convert the pageblock of the largest free block of
    another type (its free pages move to the UNMAPPED lists) and split its PMD once, so
    the pageblock becomes a cache of PTE-mapped pages. With compaction on and no free
    pageblock, direct compaction (sync) for one first, before taking a partly used pageblock."""
    if s.par[P_COMPACTION] != 0 and not has_free_pageblock(s):
        direct_compact_for_block(s, PAGEBLOCK_ORDER, MIGRATE_MOVABLE, MODE_SYNC)
    for order in range(MAX_PAGE_ORDER, -1, -1):
        for fmt in (MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE):
            pfn = s.free_head[order, fmt]
            if pfn == NIL:
                continue
            if order >= PAGEBLOCK_ORDER:  # one pageblock; the rest stays where it was
                del_from_free_list(s, pfn, order, fmt)
                expand(s, pfn, PAGEBLOCK_ORDER, order, fmt, False)
                set_pageblock_range(s, pfn, PAGEBLOCK_ORDER, MIGRATE_UNMAPPED)
                add_to_free_list(s, pfn, PAGEBLOCK_ORDER, MIGRATE_UNMAPPED, False)
            else:
                start = (pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
                for mt in (MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE):
                    __move_freepages_block(s, start, mt, MIGRATE_UNMAPPED)
                set_pageblock_mt(s, pfn >> PAGEBLOCK_ORDER, MIGRATE_UNMAPPED)
                pfn = start
            split_to_4k(s, pfn)
            s.ctr[C_CACHE_REFILL_2M] += 1
            cache_held_add(s, PAGEBLOCK_NR_PAGES)
            return True
    return False


@njit
def migratetype_alloc(s, order):
    """__rmqueue for MIGRATE_UNMAPPED: its own lists, else claim a pageblock."""
    if not zone_watermark_ok(s, order, s.par[P_WMARK_MIN]):
        return NO_PAGE
    pfn = __rmqueue_smallest(s, order, MIGRATE_UNMAPPED)
    if pfn != NO_PAGE:
        s.ctr[C_CACHE_HITS] += 1
    else:
        s.ctr[C_CACHE_MISSES] += 1
        if not claim_unmapped_pageblock(s):
            return NO_PAGE
        pfn = __rmqueue_smallest(s, order, MIGRATE_UNMAPPED)
        if pfn == NO_PAGE:
            return NO_PAGE
    prep_new_page(s, pfn, order, MIGRATE_UNMOVABLE)
    # the pages go off the direct map one by one (noflush); the pageblock is PTE-mapped already
    for i in range(1 << order):
        change_page_attr(s, pfn + i, 1, 0, PROT_PRESENT | PROT_RW, False)
    flush_tlb_kernel_range(s, 1 << order)
    return pfn


@njit
def migratetype_shrink(s, nr_to_scan):
    """Give entirely free UNMAPPED pageblocks back to MIGRATE_MOVABLE (their direct map
    stays split unless collapse is on)."""
    released = 0
    s.ctr[C_SHRINK_RUNS] += 1
    budget = nr_to_scan if nr_to_scan > 0 else s.par[P_SHRINK_BATCH]
    for order in range(MAX_PAGE_ORDER, PAGEBLOCK_ORDER - 1, -1):
        while s.free_head[order, MIGRATE_UNMAPPED] != NIL and (budget <= 0 or released < budget):
            pfn = s.free_head[order, MIGRATE_UNMAPPED]
            del_from_free_list(s, pfn, order, MIGRATE_UNMAPPED)
            set_pageblock_range(s, pfn, order, MIGRATE_MOVABLE)
            if s.par[P_CACHE_COLLAPSE] != 0:
                change_page_attr(s, pfn, 1 << order, PAGE_KERNEL, PROT_PKEY, True)
            add_to_free_list(s, pfn, order, MIGRATE_MOVABLE, True)
            released += 1 << order
    s.ctr[C_CACHE_RELEASED] += released
    cache_held_add(s, -released)
    return released


@njit
def cache_free_pages(s):
    """Free pages the policy holds: its cache's lists, or (MIGRATE_UNMAPPED, which lives in
    the zone's free lists) the UNMAPPED free lists, or (freetype) the unmapped free lists and
    per-CPU lists."""
    if s.par[P_POLICY] == POL_FREETYPE or s.par[P_POLICY] == POL_MIGRATETYPE:
        return freetype_free_pages(s)  # free-list index 3 (FREETYPE_UNMAPPED == MIGRATE_UNMAPPED)
    return s.ctr[C_CACHE_FREE]


@njit
def reported_counter(s, j):
    """Counter j as reported (reading is pure: nothing is written). MIGRATE_UNMAPPED's cache
    view (free / used pages) is derived from the zone's free lists (freetype's too)."""
    if (s.par[P_POLICY] == POL_MIGRATETYPE or s.par[P_POLICY] == POL_FREETYPE) and (j == C_CACHE_FREE
                                                                                   or j == C_CACHE_USED):
        free = cache_free_pages(s)
        return free if j == C_CACHE_FREE else s.ctr[C_CACHE_HELD] - free
    if j == C_FRAG_SCORE:
        return fragmentation_score_zone(s)
    return s.ctr[j]


# --- dispatch ------------------------------------------------------------------------


@njit
def policy_alloc(s, order):
    """Allocate for a __GFP_UNMAPPED user. Returns the pfn (its direct map already
    changed), NO_PAGE on failure, NOT_SERVED when the caller should do today's thing."""
    pol = s.par[P_POLICY]
    if pol == POL_NONE:
        return NOT_SERVED
    if pol == POL_MIGRATETYPE:
        return migratetype_alloc(s, order)
    if pol == POL_FREETYPE:
        return freetype_alloc(s, order)
    if pol == POL_GROUPED and order != 0:
        s.ctr[C_CACHE_BYPASS] += 1
        return NOT_SERVED
    pfn = cache_alloc(s, order, s.par[P_CACHE_MAX_PAGES])
    if pfn == AT_LIMIT:
        s.ctr[C_CACHE_LIMIT_FALLBACKS] += 1
        return NOT_SERVED
    return pfn


@njit
def pte_mapped(s, pfn, order):
    """Is every page of the block mapped with 4K PTEs already?"""
    end = pfn + (1 << order)
    m = pfn // PMD_PAGES
    while m * PMD_PAGES < end:
        if s.pud_map[m // PTRS_PER_PMD] == MAP_LEAF or s.pmd_map[m] == MAP_LEAF or s.pmd_map[m] == MAP_NONE:
            return False
        m += 1
    return True


@njit_inline
def policy_free(s, pfn, order):
    """Free path: blocks that came from a cache go back into it; with capture on, a
    block whose direct map is already PTE-mapped is taken into the cache. Returns True
    when the policy took the block (the caller must not free it)."""
    if s.pg_flags[pfn] & PG_CACHE:
        cache_free(s, pfn, order)
        return True
    if s.par[P_CACHE_CAPTURE] != 0 and s.par[P_POLICY] == POL_UNMAPPED_CACHE and order <= PAGEBLOCK_ORDER \
            and pte_mapped(s, pfn, order):
        maxp = s.par[P_CACHE_MAX_PAGES]
        if maxp > 0 and s.ctr[C_CACHE_HELD] + (1 << order) > maxp:
            return False
        cache_capture(s, pfn, order)
        s.ctr[C_CACHE_CAPTURED] += 1 << order
        return True
    return False


@njit
def policy_shrink(s, nr_to_scan):
    pol = s.par[P_POLICY]
    if pol == POL_NONE or pol == POL_FREETYPE:  # freetype: no shrinker, nothing is given back
        return 0
    if pol == POL_MIGRATETYPE:
        return migratetype_shrink(s, nr_to_scan)
    return cache_shrink(s, nr_to_scan)


@njit_inline
def policy_tick(s, t_us):
    """Shrinker triggers checked on each event: zone free pages below pct% of the high
    watermark, cache free pages above a threshold, or a period of simulated time."""
    pol = s.par[P_POLICY]
    if pol == POL_NONE:
        return
    pct = s.par[P_SHRINK_WMARK_PCT]
    if pct > 0 and s.ctr[C_NR_FREE] * 100 < pct * s.par[P_WMARK_HIGH]:
        policy_shrink(s, 0)
    high = s.par[P_SHRINK_HIGH]
    if high > 0 and cache_free_pages(s) > high:
        policy_shrink(s, 0)
    iv = s.par[P_SHRINK_INTERVAL_US]
    if iv > 0 and t_us >= s.var[V_SHRINK_NEXT_US]:
        policy_shrink(s, 0)
        while s.var[V_SHRINK_NEXT_US] <= t_us:
            s.var[V_SHRINK_NEXT_US] += iv


@njit
def policy_reclaim(s):
    """Called by reclaim: run the shrinker (if registered) and note what stays stranded."""
    if s.par[P_POLICY] == POL_NONE:
        return
    if s.par[P_SHRINK_ON_RECLAIM] != 0:
        policy_shrink(s, 0)
    free = cache_free_pages(s)
    if free > s.ctr[C_CACHE_STRANDED]:
        s.ctr[C_CACHE_STRANDED] = free

