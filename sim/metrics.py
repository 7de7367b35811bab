"""Counters under the kernel's names, from the state's counter array (O(1) in pages,
except the pageblock tallies, which are O(pageblocks) and only read at the end)."""
from __future__ import annotations

import numpy as np

from .constants import (
    C_ALLOC_FAIL, C_ALLOC_FAIL_ORDER, C_ALLOC_PAGES, C_ALLOCS, C_CACHE_BLOCKS, C_CACHE_BYPASS,
    C_CACHE_CAPTURED, C_CACHE_FREE, C_CACHE_HELD, C_CACHE_STRANDED,
    C_PACK_CHUNKS, C_PACK_LIMIT_FALLBACKS, C_PACKS, C_PB_MIXED, C_PB_POLLUTED,
    C_CACHE_HITS, C_CACHE_LIMIT_FALLBACKS, C_CACHE_MISSES, C_CACHE_PEAK, C_CACHE_REFILL_2M,
    C_CACHE_REFILL_LOW, C_CACHE_RELEASED, C_CACHE_USED, C_CLAIM, C_CPA, C_DM_1G, C_DM_2M,
    C_DM_4K, C_EVENTS, C_FREE_PAGES, C_FREES, C_KSWAPD, C_L2_COLLAPSES, C_L2_SPLITS,
    C_L3_COLLAPSES, C_L3_SPLITS, C_NP_PAGES, C_NR_FREE, C_NR_PCP, C_PCP_DRAIN,
    C_PCP_REFILL, C_PT_PAGES, C_RECLAIM, C_RO_PAGES, C_SHRINK_RUNS, C_STEAL, C_TLB_FLUSH,
    C_UNMAPPED_ALLOCS, MIGRATETYPE_NAMES, NR_PAGE_ORDERS, PG_BUDDY,
    C_COMPACT_DAEMON_WAKE, C_COMPACT_FAIL, C_COMPACT_FREE_SCANNED, C_COMPACT_ISOLATED,
    C_COMPACT_MIGRATE_SCANNED, C_COMPACT_STALL, C_COMPACT_SUCCESS, C_FRAG_SCORE, C_PGMIGRATE_FAIL,
    C_PGMIGRATE_SUCCESS, C_THP_FAULT_ALLOC, C_THP_FAULT_FALLBACK,
)
from .state import (
    P_MANAGED, P_MIN_FREE_KB, P_RAM_PAGES, P_WMARK_HIGH, P_WMARK_LOW, P_WMARK_MIN,
)

# (name, counter index, scale): kernel names where one exists
COUNTER_NAMES = [
    ("direct_map_level2_splits", C_L2_SPLITS, 1),
    ("direct_map_level3_splits", C_L3_SPLITS, 1),
    ("direct_map_level2_collapses", C_L2_COLLAPSES, 1),
    ("direct_map_level3_collapses", C_L3_COLLAPSES, 1),
    ("DirectMap4k", C_DM_4K, 4),
    ("DirectMap2M", C_DM_2M, 2048),
    ("DirectMap1G", C_DM_1G, 1024 * 1024),
    ("direct_map_pt_pages", C_PT_PAGES, 1),
    ("direct_map_np_pages", C_NP_PAGES, 1),
    ("direct_map_ro_pages", C_RO_PAGES, 1),
    ("nr_free_pages", C_NR_FREE, 1),
    ("nr_pcp_pages", C_NR_PCP, 1),
    ("pgalloc", C_ALLOC_PAGES, 1),
    ("pgfree", C_FREE_PAGES, 1),
    ("alloc_calls", C_ALLOCS, 1),
    ("free_calls", C_FREES, 1),
    ("alloc_fail", C_ALLOC_FAIL, 1),
    ("pgsteal", C_RECLAIM, 1),
    ("kswapd_runs", C_KSWAPD, 1),
    ("fallback_claim", C_CLAIM, 1),
    ("fallback_steal", C_STEAL, 1),
    ("cpa_calls", C_CPA, 1),
    ("tlb_flushes", C_TLB_FLUSH, 1),
    ("pcp_refills", C_PCP_REFILL, 1),
    ("pcp_drains", C_PCP_DRAIN, 1),
    ("unmapped_allocs", C_UNMAPPED_ALLOCS, 1),
    ("unmapped_cache_hits", C_CACHE_HITS, 1),
    ("unmapped_cache_misses", C_CACHE_MISSES, 1),
    ("unmapped_cache_blocks", C_CACHE_BLOCKS, 1),
    ("unmapped_cache_free_pages", C_CACHE_FREE, 1),
    ("unmapped_cache_used_pages", C_CACHE_USED, 1),
    ("unmapped_cache_released_pages", C_CACHE_RELEASED, 1),
    ("unmapped_cache_peak_pages", C_CACHE_PEAK, 1),
    ("unmapped_cache_shrink_runs", C_SHRINK_RUNS, 1),
    ("unmapped_cache_limit_fallbacks", C_CACHE_LIMIT_FALLBACKS, 1),
    ("unmapped_cache_refills_2m", C_CACHE_REFILL_2M, 1),
    ("unmapped_cache_refills_lower", C_CACHE_REFILL_LOW, 1),
    ("unmapped_cache_held_pages", C_CACHE_HELD, 1),
    ("unmapped_cache_stranded_pages", C_CACHE_STRANDED, 1),
    ("unmapped_cache_captured_pages", C_CACHE_CAPTURED, 1),
    ("unmapped_cache_bypass", C_CACHE_BYPASS, 1),
    ("bpf_prog_packs", C_PACKS, 1),
    ("bpf_prog_pack_chunks", C_PACK_CHUNKS, 1),
    ("bpf_prog_pack_limit_fallbacks", C_PACK_LIMIT_FALLBACKS, 1),
    ("pageblocks_polluted", C_PB_POLLUTED, 1),
    ("pageblocks_mixed", C_PB_MIXED, 1),
    ("events", C_EVENTS, 1),
] + [(f"alloc_fail_order_{k}", C_ALLOC_FAIL_ORDER + k, 1) for k in range(NR_PAGE_ORDERS)] + [
    ("compact_stall", C_COMPACT_STALL, 1),
    ("compact_success", C_COMPACT_SUCCESS, 1),
    ("compact_fail", C_COMPACT_FAIL, 1),
    ("compact_migrate_scanned", C_COMPACT_MIGRATE_SCANNED, 1),
    ("compact_free_scanned", C_COMPACT_FREE_SCANNED, 1),
    ("compact_isolated", C_COMPACT_ISOLATED, 1),
    ("compact_daemon_wake", C_COMPACT_DAEMON_WAKE, 1),
    ("pgmigrate_success", C_PGMIGRATE_SUCCESS, 1),
    ("pgmigrate_fail", C_PGMIGRATE_FAIL, 1),
    ("thp_fault_alloc", C_THP_FAULT_ALLOC, 1),
    ("thp_fault_fallback", C_THP_FAULT_FALLBACK, 1),
    ("fragmentation_score", C_FRAG_SCORE, 1),
]


def counters_from_array(ctr: np.ndarray) -> dict[str, int]:
    return {name: int(ctr[i]) * scale for name, i, scale in COUNTER_NAMES}


def counters(s) -> dict[str, int]:
    """All counters of a state, kernel names first (/proc/vmstat, /proc/meminfo)."""
    from .compaction import fragmentation_score_zone
    from .policy import sync_policy_counters

    sync_policy_counters(s)
    s.ctr[C_FRAG_SCORE] = fragmentation_score_zone(s)
    out = counters_from_array(s.ctr)
    nr_blocks = s.nr_free.sum(axis=1)
    for k in range(NR_PAGE_ORDERS):
        out[f"nr_free_order_{k}"] = int(nr_blocks[k])  # /proc/buddyinfo
    out["free_2m_blocks"] = int(sum(int(nr_blocks[k]) << (k - 9) for k in range(9, NR_PAGE_ORDERS)))
    par = s.par
    out["managed_pages"] = int(par[P_MANAGED])
    out["ram_pages"] = int(par[P_RAM_PAGES])
    out["min_free_kbytes"] = int(par[P_MIN_FREE_KB])
    out["wmark_min"] = int(par[P_WMARK_MIN])
    out["wmark_low"] = int(par[P_WMARK_LOW])
    out["wmark_high"] = int(par[P_WMARK_HIGH])
    tally = np.bincount(s.pb_mt, minlength=len(MIGRATETYPE_NAMES))
    for i, name in enumerate(MIGRATETYPE_NAMES):
        out[f"pageblocks_{name}"] = int(tally[i])
    return out


def pageblock_pollution(s) -> dict[str, int]:
    """{pageblocks_polluted, pageblocks_mixed} from the incremental counters (O(1))."""
    return {"pageblocks_polluted": int(s.ctr[C_PB_POLLUTED]), "pageblocks_mixed": int(s.ctr[C_PB_MIXED])}


def free_block_pages(s) -> int:
    """Pages in buddy free blocks (recount from the per-page flags; for invariants)."""
    heads = np.flatnonzero(s.pg_flags & PG_BUDDY)
    return int((1 << s.pg_order[heads].astype(np.int64)).sum())
