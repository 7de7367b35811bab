"""The freetype (ALLOC_UNMAPPED) policy through the step API: exact conversion, flush and merge
cases on a fresh 8 GiB machine with 1G pages; TLB flush accounting of the kernel paths; and
guest_memfd's per-folio flushes under `none` against none under `freetype`."""
import pytest

import sim
from sim import Machine, MachineConfig

PB = 512  # pages per pageblock


def fresh(policy="freetype", mem_mib=8192, direct_gbpages=True, **kw):
    return Machine(MachineConfig(mem_mib=mem_mib, direct_gbpages=direct_gbpages, kernel_image_mib=0, memmap=False,
                                 **kw),
                   policy=sim.policy_config(policy))


def delta(after, before, key):
    return after[key] - before[key]


@pytest.mark.parametrize("n, blocks", [(512, 1), (513, 2)])
def test_unmapped_allocations_convert_whole_pageblocks(n, blocks):
    m = fresh()
    before = m.counters()
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(n)]
    c = m.counters()
    assert None not in pfns
    assert c["freetype_unmap_conversions"] == blocks
    assert delta(c, before, "direct_map_level2_splits") == 0  # aligned 2M blocks change in place
    assert delta(c, before, "direct_map_level3_splits") <= 1  # the 1G around them splits once
    assert delta(c, before, "tlb_flush_kernel_range") == blocks  # one flush per conversion
    assert delta(c, before, "tlb_flush_kernel_pages") == blocks * PB
    assert delta(c, before, "tlb_flush_all") == delta(c, before, "direct_map_level3_splits")  # the split's
    assert len({p // PB for p in pfns}) == blocks
    assert all(m.prot[p] & 1 == 0 for p in pfns)
    assert all(m.pageblock_migratetype(p) == "unmapped" for p in pfns)
    assert c["unmapped_cache_held_pages"] == blocks * PB
    assert m.check() == []


def test_frees_keep_pages_unmapped():
    m = fresh()
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(513)]
    for p in pfns:
        m.free_pages(p, 0)
    c = m.counters()
    assert all(m.prot[p] & 1 == 0 for p in pfns)
    assert int(m.free_area[:, 3].dot([1 << o for o in range(11)])) == 2 * PB  # all on the unmapped lists
    assert c["unmapped_cache_free_pages"] == 2 * PB and c["unmapped_cache_held_pages"] == 2 * PB
    flushes = c["tlb_flush_kernel_range"]
    again = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(2 * PB)]
    c = m.counters()
    assert c["freetype_unmap_conversions"] == 2 and c["tlb_flush_kernel_range"] == flushes  # no new flush
    assert {p // PB for p in again} == {p // PB for p in pfns}
    assert m.check() == []


def test_remap_only_for_unmovable_when_only_unmapped_blocks_remain():
    m = fresh()
    _only_unmapped_blocks_free(m)  # the mapped pages used up by movable allocations: movable never remaps
    c = m.counters()
    assert c["freetype_remap_conversions"] == 0 and c["freetype_zeroed_pages"] == 0
    assert int(m.free_area[:, :3].sum()) == 0 and c["unmapped_cache_free_pages"] > 0
    flushes = (c["tlb_flush_kernel_range"], c["tlb_flush_all"])
    pfn = m.alloc_pages(0, "unmovable")  # a mapped unmovable request: remaps one block
    c2 = m.counters()
    assert pfn is not None
    assert c2["freetype_remap_conversions"] == 1
    assert c2["freetype_zeroed_pages"] == PB  # an order-10 free block is split: one pageblock remapped
    assert m.prot[pfn] & 1 and m.pageblock_migratetype(pfn) == "unmovable"
    assert (c2["tlb_flush_kernel_range"], c2["tlb_flush_all"]) == flushes  # remapping needs no flush
    assert c2["unmapped_cache_held_pages"] == c["unmapped_cache_held_pages"] - PB
    assert m.alloc_pages(0, "reclaimable") is not None  # served from the remapped block by fallback
    assert m.counters()["freetype_remap_conversions"] == 1
    assert m.check() == []


def _only_unmapped_blocks_free(m):
    """Leave free memory only on the unmapped freetype's lists: unmapped order-10 blocks
    allocated and freed, every mapped free page used up by movable allocations."""
    big = []
    while (p := m.alloc_pages(10, "unmovable", unmapped=True)) is not None:
        big.append(p)
    for p in big:
        m.free_pages(p, 10)
    for order in range(10, -1, -1):
        while m.alloc_pages(order, "movable") is not None:
            pass
    assert int(m.free_area[:, :3].sum()) == 0 and m.counters()["unmapped_cache_free_pages"] > 0


def test_remap_happens_in_the_allocation_itself_not_in_reclaim():
    """__rmqueue_direct_map sits in rmqueue_buddy: get_page_from_freelist at the low watermark
    (the fast path, no slow path, no reclaim) remaps; a per-CPU refill (rmqueue_bulk) never does."""
    from sim.constants import MIGRATE_UNMOVABLE
    from sim.page_alloc import ALLOC_WMARK_LOW, get_page_from_freelist_call, rmqueue_bulk

    m = fresh()
    _only_unmapped_blocks_free(m)
    for mt in ("movable", "reclaimable"):  # nothing of theirs left, and they never remap
        assert m.alloc_pages(0, mt) is None
    s, c = m.state, m.counters()
    assert rmqueue_bulk(s, 0, MIGRATE_UNMOVABLE, 31, False) == 0  # the refill finds nothing and stops
    assert m.counters()["freetype_remap_conversions"] == 0
    pfn = int(get_page_from_freelist_call(s, 0, MIGRATE_UNMOVABLE, 0, ALLOC_WMARK_LOW))
    c2 = m.counters()
    assert pfn >= 0 and m.prot[pfn] & 1 and m.pageblock_migratetype(pfn) == "unmovable"
    assert delta(c2, c, "freetype_remap_conversions") == 1 and delta(c2, c, "freetype_zeroed_pages") == PB
    for key in ("kswapd_runs", "pgsteal", "alloc_fail", "compact_stall", "tlb_flush_kernel_range"):
        assert delta(c2, c, key) == 0, key
    assert m.check() == []


def _fragmented(version):
    """A 1 GiB machine full of movable order-3 blocks with every other one freed: half the
    memory free, not one free pageblock, and no unmapped pageblock yet."""
    m = Machine(MachineConfig(mem_mib=1024, direct_gbpages=False, kernel_image_mib=0, memmap=False, pcp=False,
                              min_free_kbytes=128, watermark_scale_factor=1),  # little free memory left
                policy=sim.policy_config("freetype", version=version))
    blocks = []
    while (p := m.alloc_pages(3, "movable")) is not None:
        blocks.append(p)
    for p in blocks[::2]:
        m.free_pages(p, 3)
    assert not any(m.free_list(o, mt) for o in (9, 10) for mt in ("unmovable", "movable", "reclaimable"))
    return m


@pytest.mark.parametrize("version", [3, 4])
def test_v4_unmapped_allocation_direct_compacts_v3_does_not(version):
    m = _fragmented(version)
    c = m.counters()
    pfn = m.alloc_pages(0, "unmovable", unmapped=True)
    c2 = m.counters()
    if version == 4:  # compaction frees a pageblock, __rmqueue_direct_map converts it
        assert pfn is not None and m.pageblock_migratetype(pfn) == "unmapped" and m.prot[pfn] & 1 == 0
        assert delta(c2, c, "compact_stall") == 1 and delta(c2, c, "compact_success") == 1
        assert delta(c2, c, "pgmigrate_success") > 0
        assert delta(c2, c, "freetype_unmap_conversions") == 1
    else:  # no free pageblock to convert and no compaction: the allocation fails (no reclaim here)
        assert pfn is None
        for key in ("compact_stall", "compact_success", "compact_fail", "pgmigrate_success",
                    "freetype_unmap_conversions"):
            assert delta(c2, c, key) == 0, key
    assert m.check() == []


def test_version_knob_is_validated():
    with pytest.raises(sim.ConfigError, match=r"policy\.version.*one of 3, 4"):
        sim.policy_config("freetype", version=5)
    with pytest.raises(sim.ConfigError, match=r"policy\.version.*policy none does not use it"):
        sim.policy_config("none", version=3)


def test_pageblocks_merge_only_with_equal_flags():
    m = fresh(direct_gbpages=False)  # no 1G split: its page table would land in the buddy pageblock
    p = m.alloc_pages(0, "unmovable", unmapped=True)
    start = p - p % PB
    buddy = start ^ PB
    assert m.pageblock_migratetype(buddy) == "unmovable"  # the claimed order-10 block's other half
    m.free_pages(p, 0)
    assert start in m.free_list(9, "unmapped") and buddy in m.free_list(9, "unmovable")  # no merge
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(2 * PB)]
    assert {q // PB for q in pfns} == {start // PB, buddy // PB}  # the buddy was converted next
    for q in pfns:
        m.free_pages(q, 0)
    assert m.free_list(10, "unmapped") == [min(start, buddy)]  # equal flags: one order-10 block
    assert m.check() == []


def test_set_memory_flushes_as_cpa_flush():
    m = fresh("none")
    pfn = m.alloc_pages(0, "unmovable")
    c0 = m.counters()
    m.set_direct_map_invalid_noflush(pfn)  # splits 1G and 2M: two flush_tlb_all, no range flush
    c1 = m.counters()
    assert delta(c1, c0, "tlb_flush_all") == 2 and delta(c1, c0, "tlb_flush_kernel_range") == 0
    m.set_memory_ro(pfn + 1, 1)  # set_memory_*: cpa_flush of 1 page
    c2 = m.counters()
    assert delta(c2, c1, "tlb_flush_kernel_range") == 1 and delta(c2, c1, "tlb_flush_kernel_pages") == 1
    m.set_memory_ro(pfn + 1, 1)  # nothing changed: no flush
    m.set_memory_ro(pfn + 2, 40)  # more than 33 pages: flush_tlb_all
    c3 = m.counters()
    assert delta(c3, c2, "tlb_flush_kernel_range") == 0 and delta(c3, c2, "tlb_flush_all") == 1


def test_unmapped_cache_refill_flushes_its_block_once():
    m = fresh("unmapped_cache")
    c0 = m.counters()
    for _ in range(512):
        m.alloc_pages(0, "unmovable", unmapped=True)
    c = m.counters()
    assert delta(c, c0, "tlb_flush_kernel_range") == 1 and delta(c, c0, "tlb_flush_kernel_pages") == PB


def _guest_memfd_run(policy):
    cfg = sim.load_config([f"policy={policy}", "machine=small", "workload=guest_memfd", "workload.duration_s=1",
                           "workload.callers.vms.initial=1", "workload.callers.vms.rate_per_s=0",
                           "workload.callers.vms.at_s=0.5",
                           "workload.callers.vms.size_bytes={dist: fixed, value: 67108864}",
                           "workload.callers.vms.lifetime_s={dist: forever}"])
    return sim.simulate(cfg).counters


def test_guest_memfd_one_flush_per_folio_under_none_none_under_freetype():
    folios = 64 << 8  # one 64 MiB VM of 4K folios
    c = _guest_memfd_run("none")
    assert c["tlb_flush_kernel_range"] == folios and c["tlb_flush_kernel_pages"] == folios
    assert c["direct_map_np_pages"] == folios
    f = _guest_memfd_run("freetype")
    conv = f["freetype_unmap_conversions"]
    assert folios // PB <= conv <= folios // PB + 2  # (+1 per other CPU whose per-CPU list held some)
    assert f["tlb_flush_kernel_range"] == conv  # one per conversion, none per fault
    assert f["tlb_flush_kernel_pages"] == conv * PB and f["direct_map_level2_splits"] == 0
    assert f["direct_map_np_pages"] >= folios


@pytest.mark.parametrize("seed", [1, 6, 7])
def test_freetype_invariants_under_pressure(seed):
    """Random mapped / unmapped allocations and frees until memory runs out (remaps happen):
    every invariant holds, including the flag / free-list / direct-map agreement."""
    import random

    r = random.Random(seed)
    m = Machine(MachineConfig(mem_mib=1024, cpus=2, pcp=bool(seed % 2), direct_gbpages=bool(seed % 3)),
                sim.policy_config("freetype"))
    live = []
    for step in range(1500):
        k = r.random()
        if k < 0.35:
            o = r.choice([0, 0, 0, 1, 3, 9, 10])
            p = m.alloc_pages(o, "unmovable", unmapped=True)
        elif k < 0.6:
            o = r.choice([9, 10, 10, 0])
            p = m.alloc_pages(o, r.choice(["unmovable", "movable", "reclaimable"]))
        else:
            p = None
            if k < 0.65 and live:
                m.free_pages(*live.pop(r.randrange(len(live))))
            elif k > 0.97:
                m.drain_all_pages()
            elif k > 0.94:
                m.cpu = r.randrange(2)
        if p is not None:
            live.append((p, o))
        if step % 100 == 0:
            assert m.check() == [], step
    assert m.counters()["freetype_remap_conversions"] + m.counters()["alloc_fail"] > 0  # memory ran out
    for p, o in live:
        m.free_pages(p, o)
    m.drain_all_pages()
    assert m.check() == []


def test_freetype_run_resumes_from_a_checkpoint_and_continues_a_machine_aged_under_none(tmp_path):
    """freetype's state has a 4th per-CPU list (unmapped): its checkpoint restores, and a
    machine aged under `none` (3 per-CPU lists) continues under freetype."""
    from sim import checkpoint
    from sim.hydra_conf import to_sim_config
    from sim.simulate import Run

    base = ["machine=small", "workload=vm_host", "window_s=10", "workload.callers.vms.initial=2",
            "workload.callers.vms.rate_per_s=0.5", "workload.callers.vms.size_bytes={dist: fixed, value: 16777216}",
            "workload.callers.vms.lifetime_s={dist: exp, mean: 20}"]
    sc = to_sim_config(sim.load_config(base + ["policy=freetype", "workload.duration_s=60",
                                               f"checkpoint_path={tmp_path / 'ft.ckpt'}"]))
    run = Run(sc)
    assert run.s.pcp_head.shape[1] == 4
    for _ in range(3):
        assert run.step()
    checkpoint.save(sc.checkpoint_path, run)
    resumed = checkpoint.load_if_matches(sc.checkpoint_path, sc, Run)
    for r in (run, resumed):
        while r.step():
            pass
        r.finish()
    drop = {"events_per_second": 0}
    a, b = run.result(0.0).counters | drop, resumed.result(0.0).counters | drop
    assert a == b and a["freetype_unmap_conversions"] > 0

    aged = tmp_path / "aged.npz"
    sim.save_machine(sim.load_config(base + ["workload.duration_s=30"]), aged)
    cont = sim.simulate(sim.load_config(base + ["workload.duration_s=60", "policy=freetype",
                                                f"machine.snapshot={aged}"]))
    assert cont.counters["freetype_unmap_conversions"] > 0
