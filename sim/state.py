"""The simulator's state: a structure of numpy arrays (one entry per 4K page, per
pageblock / 2M region, per 1G region), bundled in a namedtuple that the compiled
(numba) functions take as their first argument.

Bytes per simulated 4K page: pg_next/pg_prev/pg_owner (int32 x 3) + pg_order + pg_flags +
pg_mt + prot (1 byte each) = 16 bytes.  Per-2M and per-1G arrays add < 0.01 byte per page.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import hugemem
from .constants import (
    MAP_LEAF, MAP_NONE, MAP_TABLE, MAP_TABLE_BOOT, MIGRATE_PCPTYPES, MIGRATE_UNMOVABLE, MIGRATE_MOVABLE,
    NR_MIGRATETYPES, NR_PAGE_ORDERS, PAGE_KERNEL, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_HOLE,
    PG_RESERVED, PMD_PAGES, PUD_PAGES,
)
from .layout import A_FAILED, C_DM_1G, C_DM_2M, C_DM_4K, N_COUNTERS, N_SCALARS, N_SETTINGS, NIL, NO_PAGE


# One 16-byte record per 4K page (struct page's fields the model needs).  The State holds
# one strided view per field, so the code reads s.pg_flags[pfn] as before, but all of a
# page's fields share a cache line: a random page costs one cache miss, not seven.  16 bytes
# (4 records per 64-byte line, none straddling two lines) since the owner field (reverse map
# for migration, compaction.py) was added to the 12 bytes before.
PAGE_RECORD = np.dtype([("next", np.int32), ("prev", np.int32), ("owner", np.int32), ("order", np.int8),
                        ("flags", np.uint8), ("mt", np.uint8), ("prot", np.uint8)])


State = namedtuple(
    "State",
    [
        "pg_next", "pg_prev",  # int32 per page: free-list / per-CPU-list links
        "pg_order", "pg_flags", "pg_mt",  # int8/uint8 per page
        "prot",  # uint8 per page: effective direct-map protection
        "pg_owner",  # int32 per page: at an allocated block head, the event loop's allocation slot (-1: none)
        "pb_mt",  # uint8 per pageblock (order 9): migratetype
        "pb_pin",  # int32 per pageblock: its pages pinned by unmovable/reclaimable/unmapped blocks (pollution.py)
        "pmd_map",  # uint8 per 2M region: MAP_NONE / MAP_LEAF / MAP_TABLE / MAP_TABLE_BOOT
        "pud_map",  # uint8 per 1G region: MAP_NONE / MAP_LEAF / MAP_TABLE
        "pmd_pt", "pud_pt",  # int32 per 2M / 1G region: pfn of the page table a split allocated
        "free_head", "free_tail",  # int32 [order, migratetype]
        "nr_free",  # int64 [order, migratetype]: blocks on each free list
        "pcp_head", "pcp_tail",  # int32 [cpu, pcp migratetype]
        "pcp_count",  # int64 [cpu]
        "pcp_free_factor",  # int64 [cpu]: pcp->free_factor (nr_pcp_free)
        "cache_head", "cache_tail",  # int32 [order 0..9, 1]: the policy cache's free lists (buddy.py)
        "cache_nr",  # int64 [order, 1]: blocks on each cache free list
        "pack_pfn", "pack_list", "pack_used",  # int32 [pack slot]: bpf_prog_pack (prog_pack.py)
        "pack_bits",  # uint64 [pack slot, 512]: each pack's chunk bitmap
        "alloc_pfn",  # int32 [slot]: the stream's lv.a_pfn (migration updates it; size 1 otherwise)
        "mig_log",  # int64 [n, 2]: (old pfn, new pfn) of migrations, when the step API asks for them
        "ctr",  # int64 counters (layout.COUNTERS, C_*)
        "par",  # int64 settings (layout.SETTINGS, P_*): read-only once booted
        "var",  # int64 mutable scalars (layout.SCALARS, V_*)
    ],
)


def kb_ranges_to_pfns(ranges) -> list[tuple[int, int]]:
    """[[start_kb, size_kb], ...] -> [(start_pfn, end_pfn), ...]."""
    return [(int(s) // 4, (int(s) + int(n)) // 4) for s, n in ranges]


def int_sqrt(x: int) -> int:
    """lib/math/int_sqrt.c: floor(sqrt(x))."""
    import math

    return math.isqrt(int(x))


def recommended_min_free_kbytes(managed_pages: int, thp_zones: int) -> int:
    """khugepaged's set_recommended_min_free_kbytes (THP enabled: always or madvise): two free
    pageblocks per zone, plus MIGRATE_PCPTYPES^2 per zone for fallbacks, at most 5 % of lowmem."""
    if thp_zones <= 0:
        return 0
    pages = PAGEBLOCK_NR_PAGES * thp_zones * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
    return min(pages, managed_pages // 20) * 4


def watermarks(managed_pages: int, min_free_kbytes: int = 0, watermark_scale_factor: int = 10, thp_zones: int = 0):
    """min_free_kbytes (mm/page_alloc.c calculate_min_free_kbytes, raised by khugepaged's
    recommendation for `thp_zones` populated zones when THP is on) and the zone watermarks
    (__setup_per_zone_wmarks) for one zone of `managed_pages`.
    Returns (min_free_kbytes, wmark_min, wmark_low, wmark_high) in pages / kB."""
    if min_free_kbytes <= 0:
        lowmem_kbytes = managed_pages * 4
        min_free_kbytes = min(max(int_sqrt(lowmem_kbytes * 16), 128), 262144)
        min_free_kbytes = max(min_free_kbytes, recommended_min_free_kbytes(managed_pages, thp_zones))
    pages_min = min_free_kbytes >> 2  # >> (PAGE_SHIFT - 10)
    wmin = pages_min  # one zone: pages_min * managed / lowmem_pages
    tmp = max(wmin >> 2, managed_pages * watermark_scale_factor // 10000)
    low = wmin + tmp
    high = low + tmp
    return min_free_kbytes, wmin, low, high


def new_state(nr_pages_span: int, ncpus: int) -> State:
    n = nr_pages_span
    assert n % PUD_PAGES == 0
    pages = hugemem.zeros(n, PAGE_RECORD)
    pages["next"] = pages["prev"] = pages["owner"] = NIL  # no list, no owner
    return State(
        pg_next=pages["next"],
        pg_prev=pages["prev"],
        pg_order=pages["order"],
        pg_flags=pages["flags"],
        pg_mt=pages["mt"],
        prot=pages["prot"],
        pg_owner=pages["owner"],
        pb_mt=np.full(n // PAGEBLOCK_NR_PAGES, MIGRATE_MOVABLE, np.uint8),
        pb_pin=np.zeros(n // PAGEBLOCK_NR_PAGES, np.int32),
        pmd_map=np.zeros(n // PMD_PAGES, np.uint8),
        pud_map=np.zeros(n // PUD_PAGES, np.uint8),
        pmd_pt=np.full(n // PMD_PAGES, NO_PAGE, np.int32),
        pud_pt=np.full(n // PUD_PAGES, NO_PAGE, np.int32),
        free_head=np.full((NR_PAGE_ORDERS, NR_MIGRATETYPES), -1, np.int32),
        free_tail=np.full((NR_PAGE_ORDERS, NR_MIGRATETYPES), -1, np.int32),
        nr_free=np.zeros((NR_PAGE_ORDERS, NR_MIGRATETYPES), np.int64),
        pcp_head=np.full((ncpus, MIGRATE_PCPTYPES), -1, np.int32),
        pcp_tail=np.full((ncpus, MIGRATE_PCPTYPES), -1, np.int32),
        pcp_count=np.zeros(ncpus, np.int64),
        pcp_free_factor=np.zeros(ncpus, np.int64),
        cache_head=np.full((PAGEBLOCK_ORDER + 1, 1), NIL, np.int32),
        cache_tail=np.full((PAGEBLOCK_ORDER + 1, 1), NIL, np.int32),
        cache_nr=np.zeros((PAGEBLOCK_ORDER + 1, 1), np.int64),
        pack_pfn=np.full(1, NO_PAGE, np.int32),  # one unused slot; prog_pack.pack_state sizes them
        pack_list=np.zeros(1, np.int32),
        pack_used=np.zeros(1, np.int32),
        pack_bits=np.zeros((1, 512), np.uint64),
        alloc_pfn=np.full(1, A_FAILED, np.int32),
        mig_log=np.zeros((1, 2), np.int64),
        ctr=np.zeros(N_COUNTERS, np.int64),
        par=np.zeros(N_SETTINGS, np.int64),
        var=np.zeros(N_SCALARS, np.int64),
    )


def state_nbytes(s: State) -> int:
    return sum(a.nbytes for a in s)


def subtract_ranges(ranges, cut) -> list[tuple[int, int]]:
    """Sorted disjoint pfn ranges covered by `ranges` and by none of `cut` (interval
    arithmetic on the few boundaries, not per page)."""
    bounds = sorted({x for r in list(ranges) + list(cut) for x in r})
    out: list[tuple[int, int]] = []
    for lo, hi in zip(bounds, bounds[1:]):
        if any(a <= lo < b for a, b in ranges) and not any(a <= lo < b for a, b in cut):
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
    return out


def ranges_mask(n: int, ranges) -> np.ndarray:
    mask = np.zeros(n, bool)
    for a, b in ranges:
        mask[a:b] = True
    return mask


def boot_layout(mc) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
    """The machine's memory layout at boot, as pfn ranges.

    Returns the pfn span (padded to a whole 1G), the RAM ranges (memory minus holes) and
    the reserved ranges: the config's reservations, the kernel image at
    CONFIG_PHYSICAL_START and the memmap (struct page, 64 bytes per 4K page) allocated
    top-down by memblock.
    """
    ram_pages = mc.mem_mib * 256
    span = -(-ram_pages // PUD_PAGES) * PUD_PAGES
    ram = subtract_ranges([(0, ram_pages)], kb_ranges_to_pfns(mc.holes))
    reserved = kb_ranges_to_pfns(mc.reserved)
    if mc.kernel_image_mib:
        a = mc.kernel_phys_start_mib * 256
        reserved.append((a, a + mc.kernel_image_mib * 256))
    if mc.memmap:
        need = -(-sum(b - a for a, b in ram) * 64 // 4096)
        top = []  # memblock allocates top-down: the highest RAM pages (below the initrd's reservation)
        for a, b in reversed(subtract_ranges(ram, [initrd_pfns(mc, ram)])):
            if need <= 0:
                break
            take = min(need, b - a)
            top.append((b - take, b))
            need -= take
        reserved.extend(reversed(top))
    return span, ram, reserved


def initrd_pfns(mc, ram) -> tuple[int, int]:
    """Where the boot loader puts the initrd (machine.boot_initrd_kb): the top of RAM below
    2 GiB (x86 boot protocol initrd_addr_max 0x7fffffff, as QEMU and GRUB place it), page
    aligned; memblock reserves it until free_initrd_mem. (0, 0) if none."""
    n = -(-getattr(mc, "boot_initrd_kb", 0) // 4)
    n = min(n, sum(b - a for a, b in ram) // 8)  # a preset's initrd on a machine made smaller: 1/8 of RAM at most
    if n == 0:
        return 0, 0
    for a, b in reversed(ram):
        top = min(b, 2 << 18)
        if top - a >= n:
            return top - n, top
    return 0, 0


def init_direct_map(s: State, ram, direct_gbpages: bool, pte_mapped) -> None:
    """Map all RAM with the largest pages possible (arch/x86/mm/init.c split_mem_range):
    1G where a whole aligned 1G is RAM and direct_gbpages is on, 2M where a whole
    aligned 2M is RAM, 4K elsewhere (edges of holes) and in the `pte_mapped` ranges."""
    n = s.prot.shape[0]
    for a, b in ram:  # the state starts zeroed: prot 0 and no flags
        s.prot[a:b] = PAGE_KERNEL
    for a, b in subtract_ranges([(0, n)], ram):
        s.pg_flags[a:b] = PG_HOLE
    ram2m = ranges_mask(n, ram).reshape(-1, PMD_PAGES)
    full2m = ram2m.all(axis=1)
    any2m = ram2m.any(axis=1)
    forced = np.zeros(n // PMD_PAGES, bool)
    for a, b in pte_mapped:
        forced[a // PMD_PAGES:-(-b // PMD_PAGES)] = True
    pmd = np.where(full2m & ~forced, MAP_LEAF, np.where(any2m, MAP_TABLE_BOOT, MAP_NONE))
    s.pmd_map[:] = pmd.astype(np.uint8)
    pmd1g = s.pmd_map.reshape(-1, 512)
    full1g = (pmd1g == MAP_LEAF).all(axis=1) if direct_gbpages else np.zeros(pmd1g.shape[0], bool)
    any1g = (pmd1g != MAP_NONE).any(axis=1)
    s.pud_map[:] = np.where(full1g, MAP_LEAF, np.where(any1g, MAP_TABLE, MAP_NONE)).astype(np.uint8)
    # 2M entries below a 1G leaf are not separate mappings
    in1g = np.repeat(full1g, 512)
    s.ctr[C_DM_1G] = int(full1g.sum())
    s.ctr[C_DM_2M] = int(((s.pmd_map == MAP_LEAF) & ~in1g).sum())
    s.ctr[C_DM_4K] = int(ram2m[s.pmd_map >= MAP_TABLE].sum())


def mark_reserved(s: State, reserved) -> None:
    for a, b in reserved:
        s.pg_flags[a:b] |= PG_RESERVED
        # boot reservations make their pageblocks unmovable
        s.pb_mt[a // PAGEBLOCK_NR_PAGES:-(-b // PAGEBLOCK_NR_PAGES)] = MIGRATE_UNMOVABLE
