"""Boot: build the state of a freshly booted machine from its MachineConfig.

Layout (holes, reservations, kernel image, memmap), the initial direct map
(init_memory_mapping), the pageblock migratetypes, the watermarks and per-CPU list
sizes, and the free lists as memblock_free_all() leaves them.
"""
import numpy as np

from .config import ConfigError, MachineConfig, validate_machine
from .constants import MAX_PAGE_ORDER, MIGRATE_MOVABLE, PAGEBLOCK_ORDER, PG_RESERVED
from .jit import njit
from .kernel_init import kernel_init
from .page_alloc import __free_one_page
from .state import (
    State, boot_layout, init_direct_map, initrd_pfns, kb_ranges_to_pfns, mark_reserved, new_state, subtract_ranges,
    watermarks,
)
from .layout import (
    P_COLLAPSE, P_COMPACT_PROACTIVENESS, P_COMPACTION, P_EXTFRAG_THRESHOLD, P_GBPAGES, P_MANAGED, P_MAX_PFN_MAPPED,
    P_MIN_FREE_KB, P_NOFRAGMENT, P_NR_PAGES, P_PCP_BATCH, P_PCP_HIGH, P_PCP_ON, P_RAM_PAGES, P_WMARK_HIGH,
    P_WMARK_LOW, P_WMARK_MIN,
)


@njit
def __free_pages_memory(s, starts, ends):
    """memblock_free_all -> __free_pages_memory: each free range in the largest aligned
    chunks (order <= MAX_PAGE_ORDER), ascending, each added to the tail (FPI_TO_TAIL)."""
    for r in range(starts.shape[0]):
        start = starts[r]
        end = ends[r]
        while start < end:
            order = MAX_PAGE_ORDER
            while order > 0 and (start & ((1 << order) - 1)) != 0:
                order -= 1
            while start + (1 << order) > end:
                order -= 1
            mt = s.pb_mt[start >> PAGEBLOCK_ORDER]
            __free_one_page(s, start, order, mt, True)
            start += 1 << order


NORMAL_ZONE_START_PFN = 4 << 18  # ZONE_NORMAL starts at 4 GiB on x86-64


def thp_zones(ram) -> int:
    """Populated zones up to ZONE_NORMAL: DMA (below 16 MiB), DMA32 (below 4 GiB), NORMAL."""
    end = ram[-1][1] if ram else 0
    return sum(any(a < hi and b > lo for a, b in ram) for lo, hi in ((0, 4096), (4096, NORMAL_ZONE_START_PFN),
                                                                     (NORMAL_ZONE_START_PFN, max(end, 1))))


def zone_batchsize(managed_pages: int) -> int:
    """zone_batchsize: ~0.1 % of the zone or 1 MB, whichever is smaller, a quarter of it, made
    2^n - 1 (63 from 1 GiB up)."""
    batch = max(min(managed_pages >> 10, 256) // 4, 1)
    return (1 << ((batch + batch // 2).bit_length() - 1)) - 1


def zone_highsize(wmark_low: int, batch: int, ncpus: int) -> int:
    """zone_highsize with percpu_pagelist_high_fraction = 0: low watermark split over the
    node's CPUs, at least 4 batches."""
    return max(wmark_low // max(ncpus, 1), batch * 4)


def boot(mc: MachineConfig, seed: int = 0) -> State:
    """The machine after boot; the boot's own allocations and frees (kernel_init.py,
    machine.boot_*) are drawn from `seed` (the run's seed)."""
    validate_machine(mc)
    span, ram, reserved = boot_layout(mc)
    s = new_state(span, mc.cpus)
    init_direct_map(s, ram, mc.direct_gbpages, kb_ranges_to_pfns(mc.pte_mapped))
    mark_reserved(s, reserved)
    initrd = initrd_pfns(mc, ram)
    if mc.boot_initrd_kb and (initrd == (0, 0) or (s.pg_flags[initrd[0]:initrd[1]] & PG_RESERVED).any()):
        raise ConfigError("machine.boot_initrd_kb", mc.boot_initrd_kb,
                          "a size that fits in free RAM below 2 GiB, clear of the kernel image and reservations")
    s.pg_flags[initrd[0]:initrd[1]] |= PG_RESERVED  # memblock_reserve
    # memmap_init's type: the initrd is freed as movable
    s.pb_mt[initrd[0] >> PAGEBLOCK_ORDER:-(-initrd[1] >> PAGEBLOCK_ORDER)] = MIGRATE_MOVABLE
    free = np.array(subtract_ranges(ram, reserved + [initrd]), np.int64).reshape(-1, 2)
    starts, ends = free[:, 0].copy(), free[:, 1].copy()
    managed = int((ends - starts).sum()) + initrd[1] - initrd[0]
    min_kb, wmin, wlow, whigh = watermarks(managed, mc.min_free_kbytes, mc.watermark_scale_factor,
                                           thp_zones(ram) if mc.transparent_hugepage else 0)
    par = s.par
    par[P_NR_PAGES] = span
    par[P_RAM_PAGES] = sum(b - a for a, b in ram)
    par[P_MAX_PFN_MAPPED] = ram[-1][1] if ram else 0
    par[P_GBPAGES] = int(mc.direct_gbpages)
    par[P_MANAGED] = managed
    par[P_MIN_FREE_KB] = min_kb
    par[P_WMARK_MIN], par[P_WMARK_LOW], par[P_WMARK_HIGH] = wmin, wlow, whigh
    par[P_PCP_ON] = int(mc.pcp)
    par[P_PCP_BATCH] = mc.pcp_batch or zone_batchsize(managed)
    par[P_PCP_HIGH] = mc.pcp_high or zone_highsize(wlow, int(par[P_PCP_BATCH]), mc.cpus)
    # alloc_flags_nofragment: only when the preferred zone is ZONE_NORMAL (RAM above 4 GiB),
    # with ZONE_DMA32 below it to protect; a machine of <= 4 GiB has no ZONE_NORMAL
    par[P_NOFRAGMENT] = int(mc.alloc_nofragment and par[P_MAX_PFN_MAPPED] > NORMAL_ZONE_START_PFN)
    par[P_COLLAPSE] = int(mc.cpa_collapse)
    par[P_COMPACTION] = int(mc.compaction)
    par[P_COMPACT_PROACTIVENESS] = mc.compaction_proactiveness
    par[P_EXTFRAG_THRESHOLD] = mc.extfrag_threshold
    __free_pages_memory(s, starts, ends)
    kernel_init(s, mc, initrd, managed, seed)
    return s
