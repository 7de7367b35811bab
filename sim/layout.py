"""The model's declared layout: every counter, setting and mutable scalar of the state, the bit
fields of the per-event word, and the status codes of the compiled functions.

Everything else is derived from the tables below: the C_* / P_* / V_* indices (module globals,
so numba compiles them as constants), `N_COUNTERS`, the reported names and scales
(`metrics.COUNTER_NAMES`) and the metric groups the sweeps use. Adding a counter is one line
in `COUNTERS`: the loop, the time series, `counters()` and MLflow pick it up.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .constants import NR_PAGE_ORDERS
from .jit import njit_inline


class Counter(NamedTuple):
    const: str  # index name in State.ctr (C_<const>)
    name: str  # reported name: the kernel's (/proc/vmstat, /proc/meminfo) where one exists
    unit: str  # unit of the reported value
    scale: int  # reported value = stored value * scale
    group: str  # headline | direct_map | allocator | pageblocks | cache | pack | compaction | per_order | loop
    doc: str
    count: int = 1  # > 1: an array of counters (name formatted with the index)


# One line per counter. Stored values are int64; `scale` turns them into the reported unit.
COUNTERS = (
    Counter("L2_SPLITS", "direct_map_level2_splits", "splits", 1, "headline", "2M -> 4K splits (/proc/vmstat)"),
    Counter("L3_SPLITS", "direct_map_level3_splits", "splits", 1, "headline", "1G -> 2M splits (/proc/vmstat)"),
    Counter("L2_COLLAPSES", "direct_map_level2_collapses", "collapses", 1, "direct_map", "4K -> 2M (CPA_COLLAPSE)"),
    Counter("L3_COLLAPSES", "direct_map_level3_collapses", "collapses", 1, "direct_map", "2M -> 1G (CPA_COLLAPSE)"),
    Counter("DM_4K", "DirectMap4k", "kB", 4, "headline", "4K leaf entries (/proc/meminfo)"),
    Counter("DM_2M", "DirectMap2M", "kB", 2048, "headline", "2M leaf entries (/proc/meminfo)"),
    Counter("DM_1G", "DirectMap1G", "kB", 1024 * 1024, "headline", "1G leaf entries (/proc/meminfo)"),
    Counter("PT_PAGES", "direct_map_pt_pages", "pages", 1, "direct_map", "page tables allocated by splits"),
    Counter("NR_FREE", "nr_free_pages", "pages", 1, "allocator", "NR_FREE_PAGES (buddy lists, not per-CPU)"),
    Counter("NR_PCP", "nr_pcp_pages", "pages", 1, "allocator", "pages on per-CPU lists"),
    Counter("ALLOCS", "alloc_calls", "calls", 1, "allocator", "successful alloc_pages calls"),
    Counter("FREES", "free_calls", "calls", 1, "allocator", "__free_pages calls"),
    Counter("ALLOC_FAIL", "alloc_fail", "calls", 1, "headline", "failed allocations (all orders)"),
    Counter("RECLAIM", "pgsteal", "pages", 1, "allocator", "pages freed by reclaim"),
    Counter("KSWAPD", "kswapd_runs", "runs", 1, "allocator", "reclaim runs"),
    Counter("CLAIM", "fallback_claim", "fallbacks", 1, "allocator", "fallbacks that claimed a pageblock"),
    Counter("STEAL", "fallback_steal", "fallbacks", 1, "allocator", "fallbacks that stole without claiming"),
    Counter("CPA", "cpa_calls", "calls", 1, "direct_map", "change_page_attr calls that changed something"),
    Counter("ALLOC_PAGES", "pgalloc", "pages", 1, "allocator", "pages handed out (sum of 1 << order)"),
    Counter("FREE_PAGES", "pgfree", "pages", 1, "allocator", "pages freed"),
    Counter("PCP_REFILL", "pcp_refills", "calls", 1, "allocator", "rmqueue_bulk calls"),
    Counter("PCP_DRAIN", "pcp_drains", "calls", 1, "allocator", "free_pcppages_bulk calls"),
    Counter("UNMAPPED_ALLOCS", "unmapped_allocs", "calls", 1, "cache", "allocations of __GFP_UNMAPPED users"),
    Counter("NP_PAGES", "direct_map_np_pages", "pages", 1, "direct_map", "4K pages not present in the direct map"),
    Counter("RO_PAGES", "direct_map_ro_pages", "pages", 1, "direct_map", "4K pages read-only in the direct map"),
    Counter("CACHE_HITS", "unmapped_cache_hits", "calls", 1, "cache", "requests served from the cache"),
    Counter("CACHE_MISSES", "unmapped_cache_misses", "calls", 1, "cache", "requests that needed a refill"),
    Counter("CACHE_BLOCKS", "unmapped_cache_blocks", "2M blocks", 1, "cache", "cache size, 2M blocks (rounded up)"),
    Counter("CACHE_FREE", "unmapped_cache_free_pages", "pages", 1, "cache", "free pages in the cache"),
    Counter("CACHE_USED", "unmapped_cache_used_pages", "pages", 1, "cache", "cached pages handed out"),
    Counter("CACHE_RELEASED", "unmapped_cache_released_pages", "pages", 1, "cache", "pages the shrinker gave back"),
    Counter("CACHE_PEAK", "unmapped_cache_peak_pages", "pages", 1, "cache", "most pages ever held"),
    Counter("SHRINK_RUNS", "unmapped_cache_shrink_runs", "runs", 1, "cache", "shrinker runs"),
    Counter("CACHE_LIMIT_FALLBACKS", "unmapped_cache_limit_fallbacks", "calls", 1, "cache",
            "requests served by today's path because the cache was at max_blocks"),
    Counter("CACHE_REFILL_2M", "unmapped_cache_refills_2m", "refills", 1, "cache", "refills with a 2M block"),
    Counter("CACHE_REFILL_LOW", "unmapped_cache_refills_lower", "refills", 1, "cache", "refills below order 9"),
    Counter("EVENTS", "events", "events", 1, "loop", "events processed by the loop"),
    Counter("CACHE_HELD", "unmapped_cache_held_pages", "pages", 1, "headline", "pages held by the cache (free + used)"),
    Counter("CACHE_STRANDED", "unmapped_cache_stranded_pages", "pages", 1, "headline",
            "most free cached pages left when reclaim ran (stranded under pressure)"),
    Counter("CACHE_CAPTURED", "unmapped_cache_captured_pages", "pages", 1, "cache",
            "freed pages captured into the cache (already PTE-mapped)"),
    Counter("CACHE_BYPASS", "unmapped_cache_bypass", "calls", 1, "cache", "requests the policy does not serve"),
    Counter("PACKS", "bpf_prog_packs", "packs", 1, "pack", "live bpf_prog_pack packs (2M each)"),
    Counter("PACK_CHUNKS", "bpf_prog_pack_chunks", "chunks", 1, "pack", "64-byte chunks in use in the packs"),
    Counter("PACK_LIMIT_FALLBACKS", "bpf_prog_pack_limit_fallbacks", "calls", 1, "pack",
            "BPF images served by today's path because the model's pack slots ran out"),
    Counter("PB_POLLUTED", "pageblocks_polluted", "pageblocks", 1, "pageblocks",
            "pageblocks holding unmovable / reclaimable / unmapped memory (pollution.py)"),
    Counter("PB_MIXED", "pageblocks_mixed", "pageblocks", 1, "pageblocks", "of which MIGRATE_MOVABLE pageblocks"),
    Counter("ALLOC_FAIL_ORDER", "alloc_fail_order_{}", "calls", 1, "per_order", "failed allocations per order",
            NR_PAGE_ORDERS),
    # compaction and migration (compaction.py), /proc/vmstat names
    Counter("COMPACT_STALL", "compact_stall", "calls", 1, "headline", "direct compactions"),
    Counter("COMPACT_SUCCESS", "compact_success", "calls", 1, "compaction", "the allocation succeeded after it"),
    Counter("COMPACT_FAIL", "compact_fail", "calls", 1, "compaction", "the allocation failed after it"),
    Counter("COMPACT_MIGRATE_SCANNED", "compact_migrate_scanned", "pfns", 1, "compaction", "migrate scanner pfns"),
    Counter("COMPACT_FREE_SCANNED", "compact_free_scanned", "pfns", 1, "compaction", "free scanner pfns"),
    Counter("COMPACT_ISOLATED", "compact_isolated", "pages", 1, "compaction", "isolated pages: sources + targets"),
    Counter("COMPACT_DAEMON_WAKE", "compact_daemon_wake", "runs", 1, "compaction", "kcompactd runs (woken or proactive)"),
    Counter("PGMIGRATE_SUCCESS", "pgmigrate_success", "pages", 1, "compaction", "pages migrated"),
    Counter("PGMIGRATE_FAIL", "pgmigrate_fail", "pages", 1, "compaction", "pages not migratable (set_memory_* targets)"),
    Counter("THP_FAULT_ALLOC", "thp_fault_alloc", "calls", 1, "compaction", "movable order-9 allocations that succeeded"),
    Counter("THP_FAULT_FALLBACK", "thp_fault_fallback", "calls", 1, "headline", "movable order-9 allocations that failed"),
    Counter("FRAG_SCORE", "fragmentation_score", "%", 1, "compaction",
            "fragmentation_score_zone: free memory not in free 2M blocks (computed when read)"),
    # TLB flushes where the modelled kernel path issues them (directmap.py: flush_tlb_*, cpa_flush)
    Counter("TLB_FLUSH_RANGE", "tlb_flush_kernel_range", "calls", 1, "headline",
            "flush_tlb_kernel_range calls (and cpa_flush's per-page flush of <= 33 pages)"),
    Counter("TLB_FLUSH_PAGES", "tlb_flush_kernel_pages", "pages", 1, "headline", "4K pages those range flushes cover"),
    Counter("TLB_FLUSH_RANGE_FULL", "tlb_flush_kernel_range_full", "calls", 1, "direct_map",
            "of the flush_tlb_kernel_range calls, those over > 33 pages, which x86 carries out as a full flush"),
    Counter("TLB_FLUSH_ALL", "tlb_flush_all", "calls", 1, "headline",
            "flush_tlb_all calls: each split, collapse, cpa_flush of an alias or of > 33 pages, "
            "cpa_flush_all after a failed change"),
    Counter("FT_UNMAPS", "freetype_unmap_conversions", "conversions", 1, "cache",
            "__rmqueue_direct_map conversions of mapped blocks to FREETYPE_UNMAPPED"),
    Counter("FT_REMAPS", "freetype_remap_conversions", "conversions", 1, "cache",
            "__rmqueue_direct_map conversions of unmapped blocks back to mapped"),
    Counter("FT_ZEROED", "freetype_zeroed_pages", "pages", 1, "cache", "pages zeroed when an unmapped block is remapped"),
)


class Slot(NamedTuple):
    const: str
    doc: str


# State.par: settings, written once at boot / policy set-up, read-only in the loop.
SETTINGS = (
    Slot("NR_PAGES", "pfn span (padded to a whole 1G)"),
    Slot("WMARK_MIN", "zone min watermark, pages"),
    Slot("WMARK_LOW", "zone low watermark, pages"),
    Slot("WMARK_HIGH", "zone high watermark, pages"),
    Slot("PCP_ON", "per-CPU lists for order 0"),
    Slot("PCP_BATCH", "pcp->batch"),
    Slot("PCP_HIGH", "pcp->high"),
    Slot("NOFRAGMENT", "ALLOC_NOFRAGMENT first pass"),
    Slot("COLLAPSE", "CPA_COLLAPSE for set_memory_rox"),
    Slot("MANAGED", "managed pages (given to the buddy allocator at boot)"),
    Slot("RAM_PAGES", "RAM pages (span minus holes)"),
    Slot("MAX_PFN_MAPPED", "max_pfn_mapped: the end of the last RAM range (CPA: holes below it are skipped)"),
    Slot("GBPAGES", "direct_gbpages: 1G leaves at boot and collapse_pud_page"),
    Slot("MIN_FREE_KB", "min_free_kbytes"),
    Slot("COMPACTION", "machine.compaction: direct compaction, kcompactd, proactive compaction (compaction.py)"),
    Slot("COMPACT_PROACTIVENESS", "vm.compaction_proactiveness"),
    Slot("EXTFRAG_THRESHOLD", "vm.extfrag_threshold"),
    # policy (sim/policy.py)
    Slot("POLICY", "layout.POL_* code"),
    Slot("CACHE_MAX_PAGES", "cache size limit, pages (0: none)"),
    Slot("CACHE_RELEASE_2M", "shrinker releases whole free 2M blocks (1) or 4K pages (0)"),
    Slot("CACHE_CAPTURE", "capture frees of already PTE-mapped pages"),
    Slot("CACHE_FALLBACK_ORDERS", "refill may take lower orders than 9"),
    Slot("CACHE_BUDDY", "internal buddy allocator (1) or a list of 4K pages (0)"),
    Slot("CACHE_MASK_SET", "direct-map change applied to cached memory (set)"),
    Slot("CACHE_MASK_CLR", "direct-map change applied to cached memory (clear)"),
    Slot("CACHE_COLLAPSE", "collapse restored regions on release"),
    Slot("CACHE_RELEASE_EMPTY", "release a 2M block as soon as it is entirely free (packs)"),
    Slot("CACHE_RESET_RELEASE", "release through vm_reset_perms (per-page invalid + default)"),
    Slot("SHRINK_WMARK_PCT", "shrink when NR_FREE_PAGES < pct% of the high watermark (0: off)"),
    Slot("SHRINK_HIGH", "shrink when free cached pages exceed this (0: off)"),
    Slot("SHRINK_INTERVAL_US", "shrink every N simulated microseconds (0: off)"),
    Slot("SHRINK_KEEP", "free cached pages the shrinker keeps"),
    Slot("SHRINK_BATCH", "pages released per shrinker run at most (0: no limit)"),
    Slot("SHRINK_ON_RECLAIM", "reclaim runs the shrinker"),
    Slot("FT_DIRECT_COMPACT", "freetype v4: direct compaction for unmapped allocations (policy.version >= 4)"),
)

# State.var: mutable scalars of the running model.
SCALARS = (
    Slot("CPU", "the CPU the current event runs on"),
    Slot("SHRINK_NEXT_US", "next periodic shrinker run, simulated microseconds"),
    Slot("PACK_COUNT", "live packs on pack_list (prog_pack.py)"),
    # compaction (compaction.py)
    Slot("COMPACT_DEFER_SHIFT", "zone->compact_defer_shift"),
    Slot("COMPACT_CONSIDERED", "zone->compact_considered"),
    Slot("COMPACT_ORDER_FAILED", "zone->compact_order_failed"),
    Slot("COMPACT_MIGRATE_PFN", "zone->compact_cached_migrate_pfn"),
    Slot("COMPACT_FREE_PB_FROM_END", "zone->compact_cached_free_pfn, as pageblocks below the last one (0: zone end)"),
    Slot("COMPACT_FREE_CURSOR", "a run's free scanner position inside its pageblock (NO_PAGE: not entered)"),
    Slot("COMPACT_FREE_PB", "a run's free scanner pageblock"),
    Slot("PROACTIVE_NEXT_US", "next proactive compaction check, simulated microseconds"),
    Slot("MIG_LOG_ON", "record migrations in State.mig_log (step API)"),
    Slot("MIG_LOG_N", "migrations recorded"),
)


class Field(NamedTuple):
    name: str
    shift: int
    bits: int


# The per-allocation word (workload.pack_info, read by the loop with the ev_* helpers below).
EVENT_WORD = (
    Field("order", 0, 4),
    Field("caller", 4, 8),
    Field("cpu", 12, 12),
    Field("flags", 24, 8),  # AF_* below
    Field("chunks", 32, 16),  # a code image's bytes in this allocation, in 64-byte chunks (0: all of it)
)


def _field(name):
    f = next(f for f in EVENT_WORD if f.name == name)
    return f.shift, (1 << f.bits) - 1


_ORDER, _CALLER, _CPU, _FLAGS, _CHUNKS = (_field(n) for n in ("order", "caller", "cpu", "flags", "chunks"))


def pack_event_word(order, caller, cpu, flags, chunks=0) -> np.ndarray:
    """Encode per-allocation words (vectorized)."""
    word = np.zeros(np.broadcast(order, caller, cpu, flags, chunks).shape, np.int64)
    for (shift, mask), v in zip((_ORDER, _CALLER, _CPU, _FLAGS, _CHUNKS), (order, caller, cpu, flags, chunks)):
        word |= (np.asarray(v).astype(np.int64) & mask) << shift
    return word


@njit_inline
def ev_word(order, caller, cpu, flags, chunks):
    """pack_event_word for one allocation, in compiled code."""
    return ((np.int64(order) << _ORDER[0]) | (np.int64(caller) << _CALLER[0]) | (np.int64(cpu) << _CPU[0])
            | (np.int64(flags) << _FLAGS[0]) | (np.int64(chunks) << _CHUNKS[0]))


def decode(words, name: str) -> np.ndarray:
    """A field of per-allocation words (vectorized; the compiled loop uses the ev_* helpers)."""
    shift, mask = _field(name)
    return (np.asarray(words, np.int64) >> shift) & mask


@njit_inline
def ev_order(info):
    return (info >> _ORDER[0]) & _ORDER[1]


@njit_inline
def ev_caller(info):
    return (info >> _CALLER[0]) & _CALLER[1]


@njit_inline
def ev_cpu(info):
    return (info >> _CPU[0]) & _CPU[1]


@njit_inline
def ev_flags(info):
    return (info >> _FLAGS[0]) & _FLAGS[1]


@njit_inline
def ev_chunks(info):
    return (info >> _CHUNKS[0]) & _CHUNKS[1]


# An event's code: allocation id << 1 | is_free
@njit_inline
def ev_is_free(code):
    return (code & 1) != 0


@njit_inline
def ev_alloc_id(code):
    return code >> 1


# per-allocation flags (the `flags` field)
AF_ACTION = 1  # apply the caller's on_alloc action to this allocation
AF_RECLAIMABLE = 2  # kswapd may free it early
AF_UNMAPPED = 4  # __GFP_UNMAPPED user: allocated through the policy
AF_NO_PACK = 8  # part of a code image larger than a bpf_prog_pack: whole pages

# the callers' direct-map actions (CallerConfig.on_alloc / on_free), code = index
ON_ALLOC = ("none", "ro", "np", "pks",
            "zap")  # guest_memfd NO_DIRECT_MAP: set_direct_map_valid_noflush + flush_tlb_kernel_range per folio
ON_FREE = ("none", "reset", "default",
           "restore")  # guest_memfd: set_direct_map_valid_noflush(true), no flush
ACT_NONE, ACT_RO, ACT_NP, ACT_PKS, ACT_ZAP = range(len(ON_ALLOC))
FREE_NONE, FREE_RESET, FREE_DEFAULT, FREE_RESTORE = range(len(ON_FREE))

# policies (PolicyConfig.name), code = index; the code packs serve only code callers
POLICIES = ("none", "unmapped_cache", "migratetype", "grouped_pages", "prog_pack", "execmem_rox",
            "freetype")  # the 2026 ALLOC_UNMAPPED freetypes (freetype.py)
POL_NONE, POL_UNMAPPED_CACHE, POL_MIGRATETYPE, POL_GROUPED, POL_PROG_PACK, POL_EXECMEM, POL_FREETYPE = range(len(POLICIES))
POLICY_CODES = {name: code for code, name in enumerate(POLICIES)}
CODE_PACKS = {"prog_pack": ("bpf",), "execmem_rox": ("bpf", "module", "ftrace", "kprobe")}


def is_code_pack(policy_name: str) -> bool:
    """prog_pack / execmem_rox: 2M ROX packs for code, BPF images in 64-byte chunks."""
    return policy_name in CODE_PACKS


# --- status codes ----------------------------------------------------------------------------
NIL = -1  # end of a linked list (pg_next / pg_prev / list heads)
# functions returning a pfn
NO_PAGE = -1  # allocation failed
NOT_SERVED = -2  # the policy does not serve this request: the caller takes today's path
AT_LIMIT = -3  # cache_alloc: the cache is at max_blocks (policy_alloc turns it into NOT_SERVED)
# a_pfn[id] besides a pfn (engine.py); pack handles are <= prog_pack.PACK_HANDLE_BASE
A_FAILED = -1  # the allocation failed
A_GONE = -2  # freed (by its free event or by reclaim)
A_NOT_YET = -3  # the allocation event has not been reached
# find_suitable_fallback
FALLBACK_NONE = -1  # no fallback list has a block of this order
FALLBACK_TOO_SMALL = -2  # too small to claim a pageblock: stop looking
# workload.admit_arrivals: done, or the reserve it ran out of (the stream grows it, calls again)
ADMITTED, NEED_OUT, NEED_SLOTS, NEED_CHUNKS, NEED_RQ = range(5)
# change_page_attr
CPA_OK = 0
CPA_ENOMEM = -12
CPA_EFAULT = -14


# --- derived ---------------------------------------------------------------------------------
def _number(table, prefix):
    out, i = {}, 0
    for e in table:
        out[prefix + e.const] = i
        i += e.count if isinstance(e, Counter) else 1
    return out, i


_C, N_COUNTERS = _number(COUNTERS, "C_")
_P, N_SETTINGS = _number(SETTINGS, "P_")
_V, N_SCALARS = _number(SCALARS, "V_")
globals().update(_C, **_P, **_V)

# (reported name, index, scale) for every counter, array counters expanded
COUNTER_NAMES = [(c.name.format(k), _C["C_" + c.const] + k, c.scale) for c in COUNTERS for k in range(c.count)]
COUNTER_INFO = {c.name.format(k): c for c in COUNTERS for k in range(c.count)}
