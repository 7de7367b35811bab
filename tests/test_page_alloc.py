"""Exact cases of the buddy allocator (mm/page_alloc.c) through the step API."""
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import Machine, MachineConfig
from sim.state import boot_layout, ranges_mask, subtract_ranges, watermarks


def bare(mem_mib=256, **kw):
    return Machine(MachineConfig(mem_mib=mem_mib, kernel_image_mib=0, memmap=False,
                                 direct_gbpages=False, **kw))


@pytest.mark.parametrize("mem_mb,expected_kb", [
    # the table above calculate_min_free_kbytes() in mm/page_alloc.c (its 8192MB line
    # says 11584k; int_sqrt(8192 * 1024 * 16) is 11585)
    (16, 512), (32, 724), (64, 1024), (128, 1448), (256, 2048), (512, 2896),
    (1024, 4096), (2048, 5792), (4096, 8192), (8192, 11585), (16384, 16384),
])
def test_min_free_kbytes_table(mem_mb, expected_kb):
    assert watermarks(mem_mb * 256)[0] == expected_kb


def test_min_free_kbytes_clamped():
    assert watermarks(16)[0] == 128
    assert watermarks(1 << 32)[0] == 262144


def test_watermarks_of_a_machine():
    m = Machine(MachineConfig(mem_mib=16384, kernel_image_mib=0, memmap=False, transparent_hugepage=False))
    c = m.counters()
    managed = 16384 * 256
    assert c["managed_pages"] == managed == c["nr_free_pages"]
    assert c["min_free_kbytes"] == 16384
    wmin = 16384 // 4
    tmp = max(wmin // 4, managed * 10 // 10000)  # watermark_scale_factor = 10
    assert (c["wmark_min"], c["wmark_low"], c["wmark_high"]) == (wmin, wmin + tmp, wmin + 2 * tmp)


@pytest.mark.parametrize("mem_mib,kb", [(2048, 45056), (16384, 67584), (64, 3276)])
def test_thp_raises_min_free_kbytes(mem_mib, kb):
    """set_recommended_min_free_kbytes: (2 + 3 * 3) pageblocks per populated zone up to NORMAL
    (DMA + DMA32 below 4 GiB, + NORMAL above), at most 5 % of lowmem; the 2 GiB guest's 45056 kB."""
    c = Machine(MachineConfig(mem_mib=mem_mib, kernel_image_mib=0, memmap=False)).counters()
    assert c["min_free_kbytes"] == kb


def test_boot_free_lists_are_max_order_blocks_in_ascending_order():
    m = bare(mem_mib=64)
    assert m.counters()["nr_free_order_10"] == 16
    assert m.free_list(10, "movable") == [i * 1024 for i in range(16)]
    assert (m.pageblock_migratetypes == 1).all()  # all MIGRATE_MOVABLE at boot


def test_boot_reservations_make_unmovable_pageblocks():
    m = Machine(MachineConfig(mem_mib=256, kernel_phys_start_mib=16, kernel_image_mib=8, memmap=False))
    pb = m.pageblock_migratetypes
    assert (pb[16 * 256 // 512:24 * 256 // 512] == 0).all()
    assert pb[0] == 1 and pb[-1] == 1
    assert m.counters()["managed_pages"] == 256 * 256 - 8 * 256


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 80)), max_size=6),
       st.lists(st.tuples(st.integers(0, 300), st.integers(1, 80)), max_size=6))
def test_boot_ranges_equal_the_per_page_layout(ranges, cut):
    """Boot computes RAM minus holes minus reservations on range boundaries, not per page:
    the same pages as the per-page masks, as sorted, disjoint, maximal ranges."""
    ranges = [(a, a + n) for a, n in ranges]
    cut = [(a, a + n) for a, n in cut]
    got = subtract_ranges(ranges, cut)
    want = ranges_mask(400, ranges) & ~ranges_mask(400, cut)
    assert np.array_equal(ranges_mask(400, got), want)
    assert all(a < b for a, b in got) and all(b1 < a2 for (_, b1), (a2, _) in zip(got, got[1:]))


def test_memmap_is_reserved_top_down_below_the_holes():
    """memblock_alloc of the memmap (64 bytes per 4K page) takes the highest RAM pages."""
    mc = MachineConfig(mem_mib=64, holes=[[60 * 1024, 2048]], kernel_image_mib=0)
    span, ram, reserved = boot_layout(mc)
    need = -(-(64 * 256 - 512) * 64 // 4096)
    assert span == 262144 and ram == [(0, 60 * 256), (60 * 256 + 512, 64 * 256)]
    assert reserved == [(64 * 256 - need, 64 * 256)]
    assert Machine(mc).counters()["managed_pages"] == 64 * 256 - 512 - need


def test_expand_leaves_one_block_of_each_lower_order():
    m = bare(mem_mib=64)
    pfn = m.alloc_pages(0, "movable")
    assert pfn == 0
    c = m.counters()
    assert [c[f"nr_free_order_{k}"] for k in range(11)] == [1] * 10 + [15]
    for k in range(10):  # expand() puts the upper halves on the free lists
        assert m.free_list(k, "movable") == [1 << k]


def test_buddy_merging_returns_to_the_initial_free_lists():
    m = bare(mem_mib=128)
    initial = m.free_area.copy()
    rng = random.Random(7)
    live = []
    for _ in range(400):
        order = rng.choice([0, 0, 0, 1, 2, 3, 5, 9])
        mt = rng.choice(["movable", "unmovable", "reclaimable"])
        pfn = m.alloc_pages(order, mt)
        assert pfn is not None
        live.append((pfn, order))
    rng.shuffle(live)
    for pfn, order in live:
        m.free_pages(pfn, order)
    assert m.check() == []
    # pageblocks claimed by unmovable/reclaimable allocations keep their type, so
    # compare the free pages per order regardless of migratetype
    assert (m.free_area.sum(axis=1) == initial.sum(axis=1)).all()
    assert m.counters()["nr_free_pages"] == 128 * 256


def test_free_goes_to_tail_when_buddy_merge_likely():
    m = bare(mem_mib=64)
    a = m.alloc_pages(0, "movable")  # 0: order-0..9 remainders 1, 2, 4, ...
    b = m.alloc_pages(0, "movable")  # 1
    c = m.alloc_pages(1, "movable")  # 2-3
    d = m.alloc_pages(0, "movable")  # 4, from the order-2 block: 5 (order 0), 6 (order 1) free
    assert (a, b, c, d) == (0, 1, 2, 4)
    assert m.free_list(0, "movable") == [5] and m.free_list(1, "movable") == [6]
    # c's buddy (0, order 1) is not free, nor is the parent's buddy (4): to the head
    m.free_pages(c, 1)
    assert m.free_list(1, "movable") == [2, 6]
    # b's buddy (0) is allocated, but its parent's buddy (2, order 1) is free: the tail
    m.free_pages(b, 0)
    assert m.free_list(0, "movable") == [5, 1]


def test_fallback_claims_a_whole_free_pageblock():
    m = bare(mem_mib=64)
    pfn = m.alloc_pages(0, "unmovable")
    c = m.counters()
    assert pfn == 0 and c["fallback_claim"] == 1 and c["fallback_steal"] == 0
    # the order-10 block's two pageblocks are now unmovable, its remainders on unmovable lists
    assert m.pageblock_migratetype(0) == "unmovable" and m.pageblock_migratetype(512) == "unmovable"
    assert m.free_area[:10, 0].tolist() == [1] * 10
    assert m.pageblock_migratetype(1024) == "movable"


def exhaust_other_blocks(m, keep=1):
    """Allocate every order-10 movable block but the first `keep`."""
    for _ in range(16 - keep):
        assert m.alloc_pages(10, "movable") is not None


def test_fallback_claims_a_partial_pageblock_with_enough_free_pages():
    m = bare(mem_mib=64, alloc_nofragment=False, min_free_kbytes=128)
    assert m.alloc_pages(0, "movable") == 0
    exhaust_other_blocks(m)
    assert m.alloc_pages(9, "movable") == 512  # no free pageblock left
    # pageblock 0: 511 free pages, 1 movable page: free + alike >= 256 -> claim
    pfn = m.alloc_pages(0, "unmovable")
    assert pfn == 1
    assert m.pageblock_migratetype(0) == "unmovable"
    assert m.counters()["fallback_claim"] == 1 and m.counters()["fallback_steal"] == 0
    assert m.free_area[1:9, 0].tolist() == [1] * 8  # the block's free pages moved lists


def test_fallback_steals_when_the_block_is_mostly_used():
    m = bare(mem_mib=64, alloc_nofragment=False, min_free_kbytes=128)
    assert m.alloc_pages(0, "movable") == 0
    exhaust_other_blocks(m)
    assert m.alloc_pages(9, "movable") == 512
    assert m.alloc_pages(8, "movable") == 256
    assert m.alloc_pages(7, "movable") == 128
    # pageblock 0: 127 free pages, 385 movable: no claim; steal the smallest block
    pfn = m.alloc_pages(0, "unmovable")
    assert pfn == 1
    c = m.counters()
    assert c["fallback_steal"] == 1 and c["fallback_claim"] == 0
    assert m.pageblock_migratetype(0) == "movable"


def test_movable_small_orders_never_claim():
    # tiny watermarks, so that every movable page can be handed out
    m = bare(mem_mib=64, alloc_nofragment=False, min_free_kbytes=4, watermark_scale_factor=1)
    assert m.alloc_pages(0, "unmovable") == 0  # claims pageblocks 0 and 1
    for order in range(9, 3, -1):
        assert m.alloc_pages(order, "unmovable") is not None  # leaves orders 0..3 free
    exhaust_other_blocks(m)
    pfn = m.alloc_pages(0, "movable")
    assert pfn == 1  # stolen from the unmovable order-0 list
    assert m.pageblock_migratetype(0) == "unmovable"
    assert m.counters()["fallback_steal"] == 1


def test_watermark_failure_is_counted_per_order():
    m = bare(mem_mib=64)
    got = 0
    while m.alloc_pages(10, "movable") is not None:
        got += 1
    c = m.counters()
    assert got < 16  # the last block would take the zone below its low/min watermark
    assert c["alloc_fail"] == 1 and c["alloc_fail_order_10"] == 1


def test_pcp_batches_order0_pages():
    # zone_batchsize of a 256 MiB zone: min(65536 >> 10, 256) / 4 = 16 -> 2^4 - 1 = 15
    m = Machine(MachineConfig(mem_mib=256, kernel_image_mib=0, memmap=False, pcp=True, cpus=2))
    pfn = m.alloc_pages(0, "movable")
    c = m.counters()
    assert c["nr_pcp_pages"] == 14 and c["nr_free_pages"] == 256 * 256 - 15
    m.free_pages(pfn, 0)
    assert m.counters()["nr_pcp_pages"] == 15
    m.drain_all_pages()
    c = m.counters()
    assert c["nr_pcp_pages"] == 0 and c["nr_free_pages"] == 256 * 256
    assert m.check() == []


def test_free_of_unallocated_block_is_refused():
    m = bare()
    pfn = m.alloc_pages(2, "movable")
    with pytest.raises(ValueError):
        m.free_pages(pfn, 1)
    with pytest.raises(ValueError):
        m.alloc_pages(11, "movable")
    with pytest.raises(ValueError):
        m.alloc_pages(0, "bogus")


def test_min_free_formula_is_int_sqrt():
    for pages in (1 << 14, 123457, 1 << 22, 987654321):
        kb = watermarks(pages)[0]
        assert kb == min(max(math.isqrt(pages * 4 * 16), 128), 262144)
    assert np.isscalar(watermarks(1000)[1])


def test_pcp_free_drains_the_freed_pages_list_first_and_doubles_per_burst():
    """free_unref_page_commit -> free_pcppages_bulk(nr_pcp_free(), pindex of the freed page)
    (6.1): at pcp->high, `batch` pages go back, twice as many on the next burst without an
    allocation (free_factor), each list from its tail, the freed page's list first."""
    m = Machine(MachineConfig(mem_mib=256, kernel_image_mib=0, memmap=False, pcp=True, cpus=1,
                              pcp_batch=4, pcp_high=12))
    mov = [m.alloc_pages(0, "movable") for _ in range(12)]
    unm = [m.alloc_pages(0, "unmovable") for _ in range(12)]
    m.drain_all_pages()
    for p in unm[:6]:
        m.free_pages(p, 0)
    for p in mov[:5]:
        m.free_pages(p, 0)
    assert m.counters()["nr_pcp_pages"] == 11
    drains = m.counters()["pcp_drains"]
    m.free_pages(mov[5], 0)  # 12 = high: 4 pages back, from the movable list's tail
    c = m.counters()
    assert c["pcp_drains"] == drains + 1 and c["nr_pcp_pages"] == 8
    on_pcp = lambda p: bool(m.state.pg_flags[p] & 4)  # noqa: E731 - PG_PCP
    assert [on_pcp(p) for p in mov[:6]] == [False, False, False, False, True, True]  # tail = first freed
    assert all(on_pcp(p) for p in unm[:6])
    for p in mov[6:10]:  # back to high: the burst doubles (free_factor 1): 8 pages
        m.free_pages(p, 0)
    c = m.counters()
    assert c["pcp_drains"] == drains + 2 and c["nr_pcp_pages"] == 4
    assert sum(on_pcp(p) for p in unm[:6]) == 4  # movable list emptied (6), then 2 unmovable from its tail
    assert m.check() == []
