"""Policies: how __GFP_UNMAPPED users get their pages, and what happens on free.

`policy_alloc` / `policy_free` are the compiled entry points the event loop and the
step API call for such users; `policy_params` turns a PolicyConfig into the state's
parameters. The caches themselves are in cache.py; the 2022 MIGRATE_UNMAPPED design is
below (it lives inside the page allocator's own free lists).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import cache_alloc, cache_capture, cache_free, cache_held_add, cache_shrink
from .config import PolicyConfig, validate_policy
from .constants import (
    C_CACHE_BYPASS, C_CACHE_CAPTURED, C_CACHE_FREE, C_CACHE_HELD, C_CACHE_HITS,
    C_CACHE_LIMIT_FALLBACKS, C_CACHE_MISSES, C_CACHE_REFILL_2M, C_CACHE_RELEASED, C_CACHE_STRANDED,
    C_CACHE_USED, C_NR_FREE,
    C_SHRINK_RUNS, MAP_LEAF, MAP_NONE, MAX_PAGE_ORDER, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE,
    MIGRATE_UNMAPPED, MIGRATE_UNMOVABLE, PAGE_KERNEL, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
    PG_CACHE, PMD_PAGES, POL_EXECMEM, POL_GROUPED, POL_MIGRATETYPE, POL_NONE, POL_PROG_PACK,
    POL_UNMAPPED_CACHE, POLICY_CODES, PROT_PKEY, PROT_PRESENT, PROT_RW, PUD_PAGES,
)
from .compaction import MODE_SYNC, direct_compact_for_block
from .directmap import change_page_attr, split_large_page_1g, split_large_page_2m
from .jit import njit, njit_inline
from .pollution import set_pageblock_mt
from .page_alloc import (
    __move_freepages_block, __rmqueue_smallest, add_to_free_list,
    del_from_free_list, expand, prep_new_page, set_pageblock_range, zone_watermark_ok,
)
from .state import (
    P_CACHE_BUDDY, P_CACHE_CAPTURE, P_CACHE_COLLAPSE, P_CACHE_FALLBACK_ORDERS, P_CACHE_MASK_CLR,
    P_CACHE_MASK_SET, P_CACHE_MAX_PAGES, P_CACHE_RELEASE_2M, P_CACHE_RELEASE_EMPTY,
    P_CACHE_RESET_RELEASE, P_COMPACTION, P_POLICY, P_SHRINK_BATCH, P_SHRINK_HIGH, P_SHRINK_INTERVAL_US,
    P_SHRINK_KEEP, P_SHRINK_NEXT_US, P_SHRINK_ON_RECLAIM, P_SHRINK_WMARK_PCT, P_WMARK_HIGH, P_WMARK_MIN,
)

NOT_SERVED = -2  # the policy does not serve this request: today's behaviour
SERVED_PAGES, SERVED_CHUNKS = 1, 2  # served_callers(): pages from the policy, or bpf_prog_pack chunks


def policy_config(name: str = "none", **knobs) -> PolicyConfig:
    """A validated policy config: conf/policy/<name>.yaml with `knobs` on top."""
    from omegaconf import OmegaConf

    from .paths import conf_dir

    if name not in POLICY_CODES:
        from .config import ConfigError

        raise ConfigError("policy.name", name, "one of " + ", ".join(POLICY_CODES))
    base = OmegaConf.structured(PolicyConfig)
    yaml = Path(conf_dir()) / "policy" / f"{name}.yaml"
    if yaml.is_file():
        base = OmegaConf.merge(base, OmegaConf.load(yaml))
    for k in knobs:
        if k not in base:
            from .config import ConfigError

            raise ConfigError(f"policy.{k}", knobs[k], "a knob of PolicyConfig: " + ", ".join(base.keys()))
    cfg = OmegaConf.to_object(OmegaConf.merge(base, {"name": name, **knobs}))
    return validate_policy(cfg)


def policy_params(par, p: PolicyConfig) -> None:
    """Write a policy's knobs into the state's parameter array."""
    code = POLICY_CODES[p.name]
    par[P_POLICY] = code
    par[P_CACHE_MAX_PAGES] = p.max_blocks * PAGEBLOCK_NR_PAGES
    par[P_CACHE_RELEASE_2M] = int(p.release == "2m")
    par[P_CACHE_CAPTURE] = int(p.capture_pte_mapped_frees)
    par[P_CACHE_FALLBACK_ORDERS] = int(p.refill_lower_orders)
    par[P_CACHE_BUDDY] = int(code != POL_GROUPED)
    par[P_CACHE_COLLAPSE] = int(p.collapse)
    par[P_CACHE_RELEASE_EMPTY] = int(code in (POL_PROG_PACK, POL_EXECMEM))
    par[P_CACHE_RESET_RELEASE] = int(code == POL_PROG_PACK)  # module_memfree -> vm_reset_perms
    if code in (POL_PROG_PACK, POL_EXECMEM):  # code packs: the direct-map alias is RO
        par[P_CACHE_MASK_SET], par[P_CACHE_MASK_CLR] = 0, PROT_RW
        par[P_CACHE_RELEASE_2M] = int(code == POL_EXECMEM)
        par[P_CACHE_FALLBACK_ORDERS] = 0
    else:  # __GFP_UNMAPPED: not present in the direct map
        par[P_CACHE_MASK_SET], par[P_CACHE_MASK_CLR] = 0, PROT_PRESENT | PROT_RW
    if code == POL_GROUPED:
        par[P_CACHE_RELEASE_2M] = 0
        par[P_CACHE_FALLBACK_ORDERS] = 0
    par[P_SHRINK_WMARK_PCT] = int(round(p.shrink_below_high_wmark_pct))
    par[P_SHRINK_HIGH] = p.shrink_above_free_pages
    par[P_SHRINK_INTERVAL_US] = int(round(p.shrink_interval_ms * 1000))
    par[P_SHRINK_NEXT_US] = par[P_SHRINK_INTERVAL_US]
    par[P_SHRINK_KEEP] = p.keep_free_pages
    par[P_SHRINK_BATCH] = p.batch_pages
    par[P_SHRINK_ON_RECLAIM] = int(p.shrink_on_reclaim)


# the code packs serve only code allocations; BPF images are packed in 64-byte chunks
PACK_KINDS = {"prog_pack": ("bpf",), "execmem_rox": ("bpf", "module", "ftrace", "kprobe")}


def served_callers(sc) -> np.ndarray:
    """Per caller (in workload order): whether the policy serves its __GFP_UNMAPPED
    requests (0), with pages (SERVED_PAGES) or with bpf_prog_pack chunks (SERVED_CHUNKS)."""
    kinds = PACK_KINDS.get(sc.policy.name)
    out = [0 if not (c.unmapped and (kinds is None or c.kind in kinds))
           else SERVED_CHUNKS if kinds is not None and c.kind == "bpf" else SERVED_PAGES
           for c in sc.workload.callers.values()]
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
            if pfn < 0:
                continue
            if order >= PAGEBLOCK_ORDER:  # one pageblock; the rest stays where it was
                del_from_free_list(s, pfn, order, fmt)
                expand(s, pfn, PAGEBLOCK_ORDER, order, fmt)
                set_pageblock_range(s, pfn, PAGEBLOCK_ORDER, MIGRATE_UNMAPPED)
                add_to_free_list(s, pfn, PAGEBLOCK_ORDER, MIGRATE_UNMAPPED, False)
            else:
                start = (pfn >> PAGEBLOCK_ORDER) << PAGEBLOCK_ORDER
                for mt in (MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE):
                    __move_freepages_block(s, start, mt, MIGRATE_UNMAPPED)
                set_pageblock_mt(s, pfn >> PAGEBLOCK_ORDER, MIGRATE_UNMAPPED)
                pfn = start
            split_to_4k(s, pfn)
            nblocks = 1
            s.ctr[C_CACHE_REFILL_2M] += nblocks
            cache_held_add(s, nblocks * PAGEBLOCK_NR_PAGES)
            return True
    return False


@njit
def migratetype_alloc(s, order):
    """__rmqueue for MIGRATE_UNMAPPED: its own lists, else claim a pageblock."""
    if not zone_watermark_ok(s, order, s.par[P_WMARK_MIN]):
        return -1
    pfn = __rmqueue_smallest(s, order, MIGRATE_UNMAPPED)
    if pfn >= 0:
        s.ctr[C_CACHE_HITS] += 1
    else:
        s.ctr[C_CACHE_MISSES] += 1
        if not claim_unmapped_pageblock(s):
            return -1
        pfn = __rmqueue_smallest(s, order, MIGRATE_UNMAPPED)
        if pfn < 0:
            return -1
    prep_new_page(s, pfn, order, MIGRATE_UNMOVABLE)
    # the pages go off the direct map one by one; the pageblock is PTE-mapped already
    for i in range(1 << order):
        change_page_attr(s, pfn + i, 1, 0, PROT_PRESENT | PROT_RW, False)
    return pfn


@njit
def migratetype_shrink(s, nr_to_scan):
    """Give entirely free UNMAPPED pageblocks back to MIGRATE_MOVABLE (their direct map
    stays split unless collapse is on)."""
    released = 0
    s.ctr[C_SHRINK_RUNS] += 1
    budget = nr_to_scan if nr_to_scan > 0 else s.par[P_SHRINK_BATCH]
    for order in range(MAX_PAGE_ORDER, PAGEBLOCK_ORDER - 1, -1):
        while s.free_head[order, MIGRATE_UNMAPPED] >= 0 and (budget <= 0 or released < budget):
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
def sync_policy_counters(s):
    """MIGRATE_UNMAPPED lives in the zone's free lists: derive the cache view from them."""
    if s.par[P_POLICY] == POL_MIGRATETYPE:
        free = 0
        for o in range(MAX_PAGE_ORDER + 1):
            free += s.nr_free[o, MIGRATE_UNMAPPED] << o
        s.ctr[C_CACHE_FREE] = free
        s.ctr[C_CACHE_USED] = s.ctr[C_CACHE_HELD] - free


# --- dispatch ------------------------------------------------------------------------


@njit
def policy_alloc(s, order):
    """Allocate for a __GFP_UNMAPPED user. Returns the pfn (its direct map already
    changed), -1 on failure, NOT_SERVED when the caller should do today's thing."""
    pol = s.par[P_POLICY]
    if pol == POL_NONE:
        return NOT_SERVED
    if pol == POL_MIGRATETYPE:
        return migratetype_alloc(s, order)
    if pol == POL_GROUPED and order != 0:
        s.ctr[C_CACHE_BYPASS] += 1
        return NOT_SERVED
    pfn = cache_alloc(s, order, s.par[P_CACHE_MAX_PAGES])
    if pfn == -2:
        s.ctr[C_CACHE_LIMIT_FALLBACKS] += 1
        return NOT_SERVED
    return pfn


@njit
def pte_mapped(s, pfn, order):
    """Is every page of the block mapped with 4K PTEs already?"""
    end = pfn + (1 << order)
    m = pfn // PMD_PAGES
    while m * PMD_PAGES < end:
        if s.pud_map[m // 512] == MAP_LEAF or s.pmd_map[m] == MAP_LEAF or s.pmd_map[m] == MAP_NONE:
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
    if pol == POL_NONE:
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
    if high > 0 and s.ctr[C_CACHE_FREE] > high:
        policy_shrink(s, 0)
    iv = s.par[P_SHRINK_INTERVAL_US]
    if iv > 0 and t_us >= s.par[P_SHRINK_NEXT_US]:
        policy_shrink(s, 0)
        while s.par[P_SHRINK_NEXT_US] <= t_us:
            s.par[P_SHRINK_NEXT_US] += iv


@njit
def policy_reclaim(s):
    """Called by reclaim: run the shrinker (if registered) and note what stays stranded."""
    if s.par[P_POLICY] == POL_NONE:
        return
    if s.par[P_SHRINK_ON_RECLAIM] != 0:
        policy_shrink(s, 0)
    if s.ctr[C_CACHE_FREE] > s.ctr[C_CACHE_STRANDED]:
        s.ctr[C_CACHE_STRANDED] = s.ctr[C_CACHE_FREE]

