"""Exact cases of x86 CPA semantics (arch/x86/mm/pat/set_memory.c) through the step API."""
import pytest

from sim import Machine, MachineConfig

G = 262144  # 4K pages per 1G
M = 512  # 4K pages per 2M


def bare(**kw):
    """A machine with no boot reservations, so every pfn is free RAM."""
    kw.setdefault("mem_mib", 4096)
    return Machine(MachineConfig(kernel_image_mib=0, memmap=False, **kw))


def test_boot_mapping_uses_largest_pages():
    c = bare(direct_gbpages=True).counters()
    assert (c["DirectMap1G"], c["DirectMap2M"], c["DirectMap4k"]) == (4 * 1048576, 0, 0)
    c = bare(direct_gbpages=False).counters()
    assert (c["DirectMap1G"], c["DirectMap2M"], c["DirectMap4k"]) == (0, 4 * 1048576, 0)


def test_boot_mapping_with_holes_maps_edges_with_4k():
    # RAM 0..2 GiB minus 128 kB at the top (QEMU's firmware reservation), and a hole
    # from 3 GiB to 4 GiB: the 2M region with the 128 kB hole is mapped with 480 PTEs.
    m = bare(mem_mib=4096, direct_gbpages=True, holes=[[2097152 - 128, 128], [3 * 1048576, 1048576]])
    c = m.counters()
    assert c["DirectMap1G"] == 2 * 1048576  # 0..1G and 2..3G; 1..2G has a hole in its last 2M
    assert c["DirectMap2M"] == 1048576 - 2048
    assert c["DirectMap4k"] == 2048 - 128
    assert m.mapping_level(3 * G) == 0  # the hole is not mapped
    assert m.set_memory_ro(3 * G, 1) == -14  # -EFAULT


def test_pte_mapped_boot_ranges_are_4k_without_counting_splits():
    m = bare(mem_mib=2048, direct_gbpages=True, pte_mapped=[[0, 2048]])
    c = m.counters()
    assert c["DirectMap4k"] == 2048 and c["DirectMap1G"] == 1048576
    assert c["direct_map_level2_splits"] == 0 and c["direct_map_level3_splits"] == 0


def test_2m_split_moves_exactly_2048_kb():
    m = bare(direct_gbpages=False)
    before = m.counters()
    pfn = m.alloc_pages(0, "movable")
    assert m.set_direct_map_invalid_noflush(pfn + 600) == 0
    c = m.counters()
    assert c["direct_map_level2_splits"] - before["direct_map_level2_splits"] == 1
    assert c["direct_map_level3_splits"] == 0
    assert c["DirectMap2M"] == before["DirectMap2M"] - 2048
    assert c["DirectMap4k"] == before["DirectMap4k"] + 2048
    assert c["direct_map_pt_pages"] == 1
    # the split's page-table page came from the page allocator
    assert c["nr_free_pages"] == before["nr_free_pages"] - 2
    assert m.mapping_level(pfn + 600) == 1 and m.mapping_level(pfn + 600 + M) == 2
    assert m.prot[pfn + 600] & 1 == 0 and m.prot[pfn + 601] == 7


def test_1g_split_goes_as_deep_as_needed():
    m = bare(direct_gbpages=True)
    assert m.set_memory_ro(G + 5 * M + 3, 1) == 0
    c = m.counters()
    assert c["direct_map_level3_splits"] == 1 and c["direct_map_level2_splits"] == 1
    assert c["DirectMap1G"] == 3 * 1048576
    assert c["DirectMap2M"] == 1048576 - 2048
    assert c["DirectMap4k"] == 2048
    assert c["direct_map_pt_pages"] == 2
    assert c["DirectMap1G"] + c["DirectMap2M"] + c["DirectMap4k"] == 4 * 1048576


def test_no_merge_on_restore():
    m = bare(direct_gbpages=False)
    m.set_direct_map_invalid_noflush(1000)
    m.set_direct_map_default_noflush(1000)
    c = m.counters()
    assert c["direct_map_level2_splits"] == 1 and c["DirectMap4k"] == 2048
    assert m.mapping_level(1000) == 1 and m.prot[1000] == 7
    m.set_memory_ro(1001, 1)  # the region is already split: no new split
    assert m.counters()["direct_map_level2_splits"] == 1


def test_unchanged_protection_does_not_split():
    m = bare(direct_gbpages=True)
    assert m.set_memory_nx(12345, 1) == 0  # the direct map is NX already
    assert m.set_memory_rw(12345, 1) == 0
    assert m.set_memory_p(12345, 7) == 0
    c = m.counters()
    assert c["direct_map_level2_splits"] == 0 and c["direct_map_level3_splits"] == 0
    assert c["cpa_calls"] == 0


def test_whole_aligned_large_page_is_updated_in_place():
    m = bare(direct_gbpages=False)
    assert m.set_memory_ro(4 * M, M) == 0
    assert m.set_memory_ro(8 * M, 3 * M) == 0  # three whole 2M pages
    c = m.counters()
    assert c["direct_map_level2_splits"] == 0
    assert (m.prot[4 * M:5 * M] == 5).all() and (m.prot[8 * M:11 * M] == 5).all()
    assert m.prot[5 * M] == 7
    assert c["direct_map_ro_pages"] == 4 * M
    g = bare(direct_gbpages=True)
    assert g.set_memory_np(G, G) == 0  # a whole 1G page
    c = g.counters()
    assert c["direct_map_level3_splits"] == 0 and c["direct_map_np_pages"] == G


def test_partial_large_page_request_splits():
    m = bare(direct_gbpages=False)
    m.set_memory_ro(4 * M, M - 1)  # one page short
    assert m.counters()["direct_map_level2_splits"] == 1
    m.set_memory_ro(6 * M + 1, M)  # unaligned: touches two 2M pages, covers neither
    assert m.counters()["direct_map_level2_splits"] == 3


def test_2m_inside_1g_splits_only_the_1g():
    m = bare(direct_gbpages=True)
    m.set_memory_ro(7 * M, M)
    c = m.counters()
    assert c["direct_map_level3_splits"] == 1 and c["direct_map_level2_splits"] == 0
    assert c["DirectMap1G"] == 3 * 1048576 and c["DirectMap2M"] == 1048576 and c["DirectMap4k"] == 0


def test_collapse_only_when_enabled_and_uniform():
    for enabled in (False, True):
        m = bare(direct_gbpages=False, cpa_collapse=enabled)
        m.set_memory_ro(10 * M + 7, 1)
        free_before = m.counters()["nr_free_pages"]
        assert m.set_memory_rox(10 * M, M) == 0
        c = m.counters()
        assert c["direct_map_level2_collapses"] == int(enabled)
        assert c["DirectMap4k"] == (0 if enabled else 2048)
        assert c["direct_map_pt_pages"] == (0 if enabled else 1)
        assert c["nr_free_pages"] == free_before + int(enabled)  # the page table is freed
        assert m.mapping_level(10 * M) == (2 if enabled else 1)
        assert (m.prot[10 * M:11 * M] == 1).all()  # present, RO, X


def test_collapse_needs_512_uniform_present_entries():
    m = bare(direct_gbpages=False, cpa_collapse=True)
    m.set_memory_ro(10 * M + 7, 1)
    m.set_memory_rox(10 * M, M - 1)  # the last PTE keeps RW+NX: not uniform
    assert m.counters()["direct_map_level2_collapses"] == 0
    m.set_memory_np(20 * M + 1, 1)
    m.set_memory_np(20 * M, M)  # uniform but not present
    m.set_memory_rox(20 * M, 1)
    assert m.counters()["direct_map_level2_collapses"] == 0


def test_collapse_restores_1g():
    m = bare(direct_gbpages=True, cpa_collapse=True)
    m.set_memory_ro(G + 3, 1)
    assert m.counters()["direct_map_level3_splits"] == 1
    m.set_memory_rox(G, G)
    c = m.counters()
    assert c["direct_map_level2_collapses"] == 1 and c["direct_map_level3_collapses"] == 1
    assert c["DirectMap1G"] == 4 * 1048576 and c["DirectMap4k"] == 0 and c["direct_map_pt_pages"] == 0


def test_boot_4k_regions_are_never_collapsed():
    m = bare(mem_mib=2048, direct_gbpages=False, cpa_collapse=True, pte_mapped=[[0, 2048]])
    m.set_memory_rox(0, M)
    assert m.counters()["direct_map_level2_collapses"] == 0


def test_out_of_range_is_an_error():
    m = bare(mem_mib=64)
    with pytest.raises(ValueError):
        m.set_memory_ro(64 * 256, 1)
    with pytest.raises(ValueError):
        m.set_memory_ro(-1, 1)


def test_set_direct_map_valid_and_default_set_present_and_rw():
    """__set_pages_p / __set_pages_np: _PAGE_PRESENT | _PAGE_RW, nothing else (NX stays)."""
    m = bare(direct_gbpages=False)
    pfn = 100 * M
    assert m.set_direct_map_invalid_noflush(pfn) == 0 and m.prot[pfn] == 4  # NX left
    assert m.set_direct_map_valid_noflush(pfn, 1, True) == 0
    assert m.prot[pfn] == 7 and m.counters()["direct_map_ro_pages"] == 0  # RW again, not RO
    assert m.set_direct_map_valid_noflush(pfn, 1, False) == 0 and m.prot[pfn] == 4
    assert m.set_direct_map_default_noflush(pfn) == 0 and m.prot[pfn] == 7
    # a 2M leaf made executable in place: default_noflush leaves X alone, so nothing to split
    m.set_memory_x(200 * M, M)
    before = m.counters()["direct_map_level2_splits"]
    assert m.set_direct_map_default_noflush(200 * M + 3) == 0
    assert m.counters()["direct_map_level2_splits"] == before and m.prot[200 * M + 3] == 3
    # valid_noflush on a read-only leaf sets RW: a split, as set_memory_rw of one page would
    m.set_memory_ro(300 * M, M)
    m.set_direct_map_valid_noflush(300 * M + 3, 1, True)
    assert m.counters()["direct_map_level2_splits"] == before + 1 and m.prot[300 * M + 3] == 7


def test_holes_below_max_pfn_mapped_are_skipped_and_above_fault():
    """__cpa_process_fault: a hole inside the direct map is skipped; past the last RAM page,
    -EFAULT, after which change_page_attr_set_clr flushes everything (cpa_flush_all)."""
    m = bare(mem_mib=4096, direct_gbpages=False, holes=[[1048576, 2048], [2097152 - 128, 128]])
    hole = G  # 1 GiB .. 1 GiB + 2 MiB is not RAM
    c0 = m.counters()
    assert m.set_memory_ro(hole - 10, M + 20) == 0  # across the hole
    c = m.counters()
    assert (m.prot[hole - 10:hole] == 5).all() and (m.prot[hole + M:hole + M + 10] == 5).all()
    assert c["direct_map_ro_pages"] == 20 and c["cpa_calls"] == c0["cpa_calls"] + 1
    assert c["tlb_flush_all"] == c0["tlb_flush_all"] + 2 + 1  # two splits, then > 33 pages
    # the 2 GiB machine's RAM ends 128 kB below 2 GiB (QEMU's reservation): beyond it, -EFAULT
    m = bare(mem_mib=2048, direct_gbpages=False, holes=[[2097152 - 128, 128]])
    c0 = m.counters()
    assert m.set_memory_ro(524200, 88) == -14  # 56 RAM pages, then 32 past the end of RAM
    c = m.counters()
    assert c["direct_map_ro_pages"] == 56 and c["cpa_calls"] == c0["cpa_calls"] + 1
    assert c["tlb_flush_all"] == c0["tlb_flush_all"] + 1 and c["tlb_flush_kernel_range"] == 0


def test_collapse_runs_only_when_the_call_changed_something():
    """6.15+ collapses from cpa_flush, which a call that changed nothing does not reach."""
    m = bare(direct_gbpages=False, cpa_collapse=True)
    m.set_memory_x(10 * M + 7, 1)  # split; every PTE then made RO + X by hand, one at a time
    m.set_memory_ro(10 * M, M)
    m.set_memory_x(10 * M, M)
    c0 = m.counters()
    assert c0["direct_map_level2_collapses"] == 0 and m.mapping_level(10 * M) == 1
    assert m.set_memory_rox(10 * M, M) == 0  # RO + X already: nothing changes
    c = m.counters()
    assert c["direct_map_level2_collapses"] == 0 and c["tlb_flush_all"] == c0["tlb_flush_all"]
    assert m.mapping_level(10 * M) == 1


def test_1g_collapse_follows_a_2m_collapse_and_needs_gbpages():
    """collapse_large_pages tries collapse_pud_page only right after collapse_pmd_page
    succeeded at that address, and collapse_pud_page needs direct_gbpages."""
    m = bare(direct_gbpages=True, cpa_collapse=True)
    m.set_memory_ro(G + 7 * M, M)  # a 1G split only: the 2M leaf is updated in place
    assert m.counters()["direct_map_level3_splits"] == 1 and m.mapping_level(G + 7 * M) == 2
    m.set_memory_rox(G, G)  # no PMD table to collapse: the 1G region stays split
    c = m.counters()
    assert c["direct_map_level3_collapses"] == 0 and c["DirectMap1G"] == 3 * 1048576
    m = bare(direct_gbpages=False, cpa_collapse=True)
    m.set_memory_ro(3, 1)
    m.set_memory_rox(0, G)
    c = m.counters()
    assert c["direct_map_level2_collapses"] == 1 and c["direct_map_level3_collapses"] == 0
    assert c["DirectMap1G"] == 0


def test_flush_tlb_kernel_range_over_33_pages_is_a_full_flush_on_x86():
    m = bare(direct_gbpages=False)
    m.flush_tlb_kernel_range(0, 33)
    m.flush_tlb_kernel_range(0, 34)
    c = m.counters()
    assert c["tlb_flush_kernel_range"] == 2 and c["tlb_flush_kernel_pages"] == 67
    assert c["tlb_flush_kernel_range_full"] == 1
