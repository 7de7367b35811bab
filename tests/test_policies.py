"""The 2M unmapped-page cache, its shrinker and the alternative designs, through the
step API, plus a scenario on a machine fragmented by background churn."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

import sim
from sim import ConfigError, Machine, MachineConfig

ROOT = Path(__file__).resolve().parents[1]


def fresh(policy, mem_mib=4096, **kw):
    return Machine(MachineConfig(mem_mib=mem_mib, kernel_image_mib=0, memmap=False, **kw), policy=policy)


def delta(after, before, key):
    return after[key] - before[key]


@pytest.mark.parametrize("release", ["2m", "4k"])
def test_unmapped_cache_512_pages_one_block(release):
    m = fresh(sim.policy_config("unmapped_cache", release=release))
    before = m.counters()
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(512)]
    c = m.counters()
    assert delta(c, before, "direct_map_level2_splits") <= 1
    assert delta(c, before, "direct_map_level3_splits") <= 1
    assert c["unmapped_cache_misses"] == 1 and c["unmapped_cache_hits"] == 511
    assert c["unmapped_cache_blocks"] == 1 and c["unmapped_cache_refills_2m"] == 1
    assert all(m.prot[p] & 1 == 0 for p in pfns)  # off the direct map
    assert len(set(p >> 9 for p in pfns)) == 1  # all from one 2M block
    for p in pfns:
        m.free_pages(p, 0)
    assert m.counters()["unmapped_cache_free_pages"] == 512
    assert m.shrink() == 512
    c = m.counters()
    assert c["unmapped_cache_blocks"] == 0 and c["unmapped_cache_released_pages"] == 512
    assert all(m.prot[p] == 7 for p in pfns)
    if release == "2m":  # restored in place: no 4K mapping anywhere
        assert c["DirectMap4k"] == 0 and c["direct_map_level2_splits"] == 0
    else:  # the 2023 RFC restores one 4K page at a time: the kept-whole PMD splits
        assert delta(c, before, "direct_map_level2_splits") == 1 and c["DirectMap4k"] == 2048
    assert m.check() == []


def test_none_policy_unmaps_each_page():
    m = fresh(sim.policy_config("none"))
    pfn = m.alloc_pages(2, "unmovable", unmapped=True)
    assert all(m.prot[pfn + i] & 1 == 0 for i in range(4))
    c = m.counters()
    assert c["direct_map_np_pages"] == 4 and c["direct_map_level2_splits"] == 1
    assert c["unmapped_cache_blocks"] == 0


def test_cache_serves_higher_orders_from_its_buddy():
    m = fresh(sim.policy_config("unmapped_cache"))
    a = m.alloc_pages(3, "unmovable", unmapped=True)
    b = m.alloc_pages(9, "unmovable", unmapped=True)
    c = m.counters()
    assert c["unmapped_cache_misses"] == 2 and c["unmapped_cache_blocks"] == 2
    assert c["unmapped_cache_free_pages"] == 512 - 8
    m.free_pages(a, 3)
    assert m.counters()["unmapped_cache_free_pages"] == 512  # merged back to one free 2M block
    m.free_pages(b, 9)
    assert m.check() == []


def test_size_limit_falls_back_to_todays_behaviour():
    m = fresh(sim.policy_config("unmapped_cache", max_blocks=1), direct_gbpages=False)
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(513)]
    c = m.counters()
    assert c["unmapped_cache_limit_fallbacks"] == 1 and c["unmapped_cache_blocks"] == 1
    assert c["direct_map_level2_splits"] == 1  # the fallback page split its own 2M page
    assert m.prot[pfns[-1]] & 1 == 0
    assert m.check() == []


def test_capture_of_pte_mapped_frees():
    m = fresh(sim.policy_config("unmapped_cache", capture_pte_mapped_frees=True), direct_gbpages=False)
    p = m.alloc_pages(0, "movable")
    m.set_direct_map_invalid_noflush(p)  # splits p's 2M page
    m.set_direct_map_default_noflush(p)
    q = m.alloc_pages(0, "movable")
    assert q >> 9 == p >> 9  # same (now PTE-mapped) 2M region
    m.free_pages(q, 0)
    c = m.counters()
    assert c["unmapped_cache_captured_pages"] == 1 and c["unmapped_cache_free_pages"] == 1
    assert m.prot[q] & 1 == 0  # captured pages are off the direct map
    r = m.alloc_pages(0, "unmovable", unmapped=True)
    c = m.counters()
    assert r == q and c["unmapped_cache_hits"] == 1 and c["unmapped_cache_refills_2m"] == 0
    assert c["direct_map_level2_splits"] == 1
    big = m.alloc_pages(9, "movable")
    assert m.mapping_level(big) == 2
    m.free_pages(big, 9)  # a free in a 2M-mapped region is not captured
    assert m.counters()["unmapped_cache_captured_pages"] == 1
    assert m.check() == []


def test_migratetype_pageblock_becomes_pte_mapped_cache():
    m = fresh(sim.policy_config("migratetype"), direct_gbpages=False)
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(300)]
    c = m.counters()
    assert c["direct_map_level2_splits"] == 1 and c["unmapped_cache_misses"] == 1
    assert m.pageblock_migratetype(pfns[0]) == "unmapped"
    assert len(set(p >> 9 for p in pfns)) == 1
    for p in pfns:
        m.set_direct_map_default_noflush(p)
        m.free_pages(p, 0)
    assert m.shrink() == 512  # the whole pageblock back to MIGRATE_MOVABLE
    assert m.pageblock_migratetype(pfns[0]) == "movable"
    assert m.counters()["DirectMap4k"] == 2048  # stays split: no collapse
    assert m.check() == []


def test_grouped_pages_order0_list_and_4k_shrink():
    m = fresh(sim.policy_config("grouped_pages"), direct_gbpages=False)
    a = m.alloc_pages(0, "unmovable", unmapped=True)
    b = m.alloc_pages(1, "unmovable", unmapped=True)  # not served: today's path
    c = m.counters()
    assert c["unmapped_cache_bypass"] == 1 and c["unmapped_cache_blocks"] == 1
    assert c["unmapped_cache_free_pages"] == 511 and c["direct_map_level2_splits"] == 1  # from b
    m.free_pages(a, 0)
    assert m.shrink(nr_to_scan=10) == 10
    c = m.counters()
    assert c["direct_map_level2_splits"] == 2 and c["unmapped_cache_free_pages"] == 502
    assert b is not None and m.check() == []


def test_prog_pack_frees_an_empty_pack_page_by_page():
    m = fresh(sim.policy_config("prog_pack"), direct_gbpages=False)
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(3)]
    c = m.counters()
    assert c["direct_map_level2_splits"] == 0 and c["direct_map_ro_pages"] == 512  # RO in place
    for p in pfns:
        m.free_pages(p, 0)
    c = m.counters()  # module_memfree of the pack: vm_reset_perms page by page splits it
    assert c["unmapped_cache_blocks"] == 0 and c["direct_map_level2_splits"] == 1
    assert m.check() == []


def test_execmem_rox_restores_large_pages():
    m = fresh(sim.policy_config("execmem_rox"), direct_gbpages=True, cpa_collapse=True)
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(3)]
    assert m.counters()["direct_map_level3_splits"] == 1
    for p in pfns:
        m.free_pages(p, 0)
    c = m.counters()  # the block's 2M leaf was changed and restored in place: never split
    assert c["unmapped_cache_blocks"] == 0 and c["direct_map_level2_splits"] == 0
    # collapse_large_pages tries the 1G only right after collapsing a 2M table there: none here
    assert c["direct_map_level3_collapses"] == 0 and c["DirectMap1G"] == 3 * 1048576
    assert m.check() == []
    # a block whose 2M was split (a 4K change inside it first) collapses to 2M, then to 1G
    m = fresh(sim.policy_config("execmem_rox"), direct_gbpages=True, cpa_collapse=True)
    pfn = m.alloc_pages(0, "unmovable", unmapped=True)
    block = pfn - pfn % 512
    m.set_memory_np(block + 5, 1)  # splits the cache's 2M leaf
    m.set_memory_p(block + 5, 1)
    assert m.counters()["direct_map_level2_splits"] == 1
    m.free_pages(pfn, 0)
    c = m.counters()
    assert c["direct_map_level2_collapses"] == 1 and c["direct_map_level3_collapses"] == 1
    assert c["DirectMap1G"] == 4 * 1048576 and c["DirectMap4k"] == 0
    assert m.check() == []


def test_bpf_prog_pack_packs_images_in_64_byte_chunks():
    m = fresh(sim.policy_config("prog_pack"), direct_gbpages=False)
    hs = [m.bpf_prog_pack_alloc(500) for _ in range(64)]  # 8 chunks each (round_up(500, 64) / 64)
    c = m.counters()
    assert m.bpf_prog_packs() == [(m.bpf_prog_packs()[0][0], 512)]  # one pack, 512 chunks in use
    assert c["unmapped_cache_refills_2m"] == 1 and c["bpf_prog_packs"] == 1 and c["bpf_prog_pack_chunks"] == 512
    assert c["direct_map_level2_splits"] == 0 and c["direct_map_ro_pages"] == 512  # the pack is RO in place
    # first fit (bitmap_find_next_zero_area from bit 0): a freed hole is reused by an image
    # that fits in it, and skipped by one that does not
    m.bpf_prog_pack_free(hs[0], 500)
    assert m.bpf_prog_pack_alloc(512) == hs[0]  # 8 chunks: back into the hole at chunk 0
    m.bpf_prog_pack_free(hs[1], 500)
    h9 = m.bpf_prog_pack_alloc(513)  # 9 chunks: after the last image
    assert h9 == hs[-1] - 8
    assert m.check() == []


@pytest.mark.parametrize("policy,l2_splits", [("prog_pack", 1), ("execmem_rox", 0)])
def test_bpf_prog_pack_full_pack_opens_a_new_one_and_empty_pack_is_freed(policy, l2_splits):
    m = fresh(sim.policy_config(policy), direct_gbpages=False)
    first = [m.bpf_prog_pack_alloc(4096) for _ in range(512)]  # 512 x 64 chunks = one whole pack
    assert len(m.bpf_prog_packs()) == 1
    second = m.bpf_prog_pack_alloc(1)
    assert [used for _, used in m.bpf_prog_packs()] == [32768, 1]
    for h in first:
        m.bpf_prog_pack_free(h, 4096)
    c = m.counters()  # the empty pack is freed: prog_pack through vm_reset_perms (splits), execmem in place
    assert c["bpf_prog_packs"] == 1 and c["direct_map_level2_splits"] == l2_splits
    assert c["unmapped_cache_released_pages"] == 512
    m.bpf_prog_pack_free(second, 1)
    assert m.bpf_prog_packs() == [] and m.check() == []
    with pytest.raises(ValueError, match=r"size=2097153: allowed \[1, 2097152\]"):
        m.bpf_prog_pack_alloc((2 << 20) + 1)
    with pytest.raises(ValueError, match="code-pack policy"):
        fresh(sim.policy_config("none")).bpf_prog_pack_alloc(100)


def test_bpf_images_share_packs_in_a_simulation():
    """BPF images with a forever lifetime: the packs hold them at chunk granularity, so the
    number of packs is the chunks in use over 32768, rounded up (first fit, no frees)."""
    cfg = sim.load_config(["machine=small", "workload=idle", "workload.duration_s=30", "policy=prog_pack",
                           "++workload.callers={bpf: {kind: bpf, rate_per_s: 200.0, unmapped: true,"
                           " on_alloc: ro, on_free: reset, lifetime_s: {dist: forever},"
                           " size_bytes: {dist: lognormal, median: 500, sigma: 2.09}}}"])
    c = sim.simulate(cfg).counters
    chunks, packs = c["bpf_prog_pack_chunks"], c["bpf_prog_packs"]
    assert chunks > 32768  # more than one pack's worth
    assert math.ceil(chunks / 32768) <= packs <= math.ceil(chunks / 32768) + 1
    assert c["unmapped_cache_blocks"] == packs and c["direct_map_level2_splits"] == 0


@pytest.mark.parametrize("policy,held,left", [("none", 2, 2), ("unmapped_cache", 3, 1)])
def test_pageblock_pollution_counts_blocks_holding_unmovable_memory(policy, held, left):
    m = fresh(sim.policy_config(policy))
    assert m.pageblock_pollution() == {"pageblocks_polluted": 0, "pageblocks_mixed": 0}
    movable = m.alloc_pages(0, "movable")
    assert m.pageblock_pollution()["pageblocks_polluted"] == 0  # movable memory pollutes nothing
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(600)]
    # none: 600 pages in two claimed unmovable pageblocks, with the splits' page tables;
    # unmapped_cache: two cached 2M blocks plus the pageblock of the page tables
    assert m.pageblock_pollution() == {"pageblocks_polluted": held, "pageblocks_mixed": 0}
    for p in pfns:
        m.free_pages(p, 0)
    assert m.pageblock_pollution()["pageblocks_polluted"] == held  # the cache still holds its blocks
    m.shrink()
    # none: the page tables of the splits stay in both blocks; the cache gave its blocks back
    assert m.pageblock_pollution()["pageblocks_polluted"] == left
    m.free_pages(movable, 0)
    assert m.check() == []


def test_policy_knobs_are_validated():
    with pytest.raises(ConfigError, match="policy.max_blocks"):
        sim.policy_config("unmapped_cache", max_blocks=-1)
    with pytest.raises(ConfigError, match="policy.release"):
        sim.policy_config("unmapped_cache", release="8k")
    with pytest.raises(ConfigError, match="policy.bogus"):
        sim.policy_config("unmapped_cache", bogus=1)
    with pytest.raises(ConfigError, match="policy.name"):
        sim.policy_config("lru")
    p = sim.policy_config("unmapped_cache", max_blocks=64, release="2m", capture_pte_mapped_frees=True)
    assert p.max_blocks == 64 and p.capture_pte_mapped_frees
    with pytest.raises(ConfigError, match="policy.max_blocks"):
        sim.load_config(["policy=unmapped_cache", "policy.max_blocks=-5"])


SCENARIO = [
    "machine.mem_mib=2048", "machine.cpus=2", "workload=idle", "workload.duration_s=60",
    "workload.target_utilisation=0.85",
    # N scattered order-0 __GFP_UNMAPPED allocations, held to the end
    "++workload.callers={secretmem: {kind: secretmem, rate_per_s: 40.0, lifetime_s: {dist: forever},"
    " on_alloc: np, on_free: default, unmapped: true}}",
]


def test_scenario_cache_vs_none_on_a_fragmented_machine():
    res = {p: sim.simulate(sim.load_config(SCENARIO + [f"policy={p}"])).counters
           for p in ("none", "unmapped_cache")}
    n = res["none"]["unmapped_allocs"]
    assert n > 1500
    splits_none = res["none"]["direct_map_level2_splits"]
    splits_cache = res["unmapped_cache"]["direct_map_level2_splits"]
    assert splits_cache <= math.ceil(n / 512) + 2
    assert splits_none >= 5 * max(splits_cache, 1)
    assert res["unmapped_cache"]["unmapped_cache_held_pages"] >= n
    assert res["unmapped_cache"]["unmapped_cache_blocks"] >= math.ceil(n / 512)


def test_cli_with_policy_knobs(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sim", "machine=small", "workload.duration_s=5",
                        "policy=unmapped_cache", "policy.max_blocks=64", f"hydra.run.dir={tmp_path}"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "unmapped_cache_blocks" in p.stdout
    p = subprocess.run([sys.executable, "-m", "sim", "policy=unmapped_cache", "policy.release=8k",
                        f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode != 0 and "policy.release" in p.stderr
