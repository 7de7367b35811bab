"""Compaction and page migration (sim/compaction.py): exact cases of compact_zone and
deferral, property tests of the invariants (the owner map included) after compaction
under every policy, and the event loop's owners following migrated blocks."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim import Machine, MachineConfig
from sim.config import ConfigError, PolicyConfig
from sim.constants import MIGRATE_MOVABLE, PG_ALLOC

SMALL = dict(mem_mib=256, min_free_kbytes=128)  # min watermark 32 pages: a full machine has no free 2M block


def fill_movable(m: Machine) -> list[int]:
    pfns = []
    while (p := m.alloc_pages(0, "movable")) is not None:
        pfns.append(p)
    return sorted(pfns)


def test_compact_makes_a_2m_block_from_every_other_page_free():
    m = Machine(MachineConfig(**SMALL))
    pfns = fill_movable(m)
    for p in pfns[::2]:
        m.free_pages(p, 0)
    live = set(pfns[1::2])
    assert m.free_2m_blocks() == 0
    free_before = m.counters()["nr_free_pages"]
    score_before = m.fragmentation_score()
    moves = m.compact(9)
    assert m.compact_result == "success"
    assert m.free_2m_blocks() >= 1
    assert m.counters()["nr_free_pages"] == free_before
    assert moves and set(moves) <= live  # every moved page was an allocated movable page
    s = m.state
    for old, new in moves.items():
        assert s.pg_flags[new] & PG_ALLOC and s.pg_order[new] == 0 and s.pg_mt[new] == MIGRATE_MOVABLE
        assert not s.pg_flags[old] & PG_ALLOC
        assert m.owner_pfn(old) == new
    c = m.counters()
    assert c["pgmigrate_success"] == len(moves) and c["compact_isolated"] == 2 * len(moves)
    assert c["compact_migrate_scanned"] > 0 and c["compact_free_scanned"] > 0
    assert m.fragmentation_score() < score_before
    assert m.compact_defer_shift == 0 and m.check() == []
    # the moved pages can be freed at their new place
    for old in moves:
        m.free_pages(m.owner_pfn(old), 0)
    assert m.check() == []


def test_unmovable_page_in_every_pageblock_gains_nothing_and_defers():
    m = Machine(MachineConfig(**SMALL))
    pfns = fill_movable(m)
    by_pb: dict[int, list[int]] = {}
    for p in pfns:
        by_pb.setdefault(p >> 9, []).append(p)
    pinned = set()
    for pb, pages in by_pb.items():
        while pb not in pinned:  # free a movable page of this pageblock, take it back unmovable
            m.free_pages(pages.pop(), 0)
            q = m.alloc_pages(0, "unmovable")
            assert q is not None
            pinned.add(q >> 9)
    for pages in by_pb.values():
        for p in pages[::2]:
            m.free_pages(p, 0)
    free_before = m.counters()["nr_free_pages"]
    assert m.free_2m_blocks() == 0
    m.compact(9)
    assert m.free_2m_blocks() == 0  # nothing gained
    assert m.compact_result == "complete"  # the scanners met
    assert m.counters()["nr_free_pages"] == free_before
    assert m.compact_defer_shift == 1 and m.compaction_deferred(9)
    assert m.check() == []


def test_deferral_follows_the_kernel():
    m = Machine(MachineConfig(mem_mib=256))
    from sim.compaction import compaction_defer_reset, defer_compaction

    for _ in range(10):
        defer_compaction(m.state, 9)
    assert m.compact_defer_shift == 6  # COMPACT_MAX_DEFER_SHIFT
    skipped = 0
    while m.compaction_deferred(9):
        skipped += 1
    assert skipped == 63  # 1 << 6 attempts, the last one runs
    assert not m.compaction_deferred(8)  # below compact_order_failed: never deferred
    compaction_defer_reset(m.state, 9, True)
    assert m.compact_defer_shift == 0 and not m.compaction_deferred(9)


def test_nothing_to_do_and_no_memory():
    m = Machine(MachineConfig(mem_mib=256))
    assert m.compact(9) == {} and m.compact_result == "success"  # a free 2M block exists already
    m2 = Machine(MachineConfig(**SMALL))
    fill_movable(m2)
    assert m2.compact(9) == {} and m2.compact_result == "skipped"  # below the watermark + compact_gap


def test_config_keys_are_validated():
    for key, bad in (("compaction_proactiveness", 101), ("extfrag_threshold", 1001), ("extfrag_threshold", -1)):
        with pytest.raises(ConfigError, match=f"machine.{key}"):
            sim.load_config([f"machine.{key}={bad}"])


MT = ["unmovable", "movable", "reclaimable"]
op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 10), st.sampled_from(MT)),
    st.tuples(st.just("alloc"), st.integers(0, 3), st.just("movable")),
    st.tuples(st.just("unmapped"), st.integers(0, 3), st.none()),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("np"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("compact"), st.integers(1, 10), st.sampled_from(MT)),
    st.tuples(st.just("shrink"), st.integers(0, 2048), st.none()),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=150), fill=st.integers(0, 3000),
       policy=st.sampled_from(["none", "unmapped_cache", "migratetype", "grouped_pages", "prog_pack", "execmem_rox",
                               "freetype"]),
       pcp=st.booleans())
def test_random_compaction_keeps_invariants_and_the_direct_map(ops, fill, policy, pcp):
    """Invariants (the owner map included) hold after random compaction under every policy;
    migration never changes a region's split state or any page's direct-map protection."""
    release = "4k" if policy == "grouped_pages" else "2m"
    m = Machine(MachineConfig(mem_mib=512, cpus=2, pcp=pcp, kernel_image_mib=16),
                PolicyConfig(name=policy, release=release))
    live = []
    for i in range(fill):  # fragment: movable pages, every third one freed below
        p = m.alloc_pages(0, "movable" if i % 7 else "unmovable")
        if p is not None:
            live.append((p, 0))
    for j in range(0, len(live), 3):
        m.free_pages(*live[j])
    live = [x for j, x in enumerate(live) if j % 3]
    for kind, a, b in ops:
        if kind in ("alloc", "unmapped"):
            pfn = m.alloc_pages(a, b or "unmovable", unmapped=kind == "unmapped")
            if pfn is not None:
                live.append((pfn, a))
        elif kind == "free" and live:
            pfn, order = live.pop(a % len(live))
            m.free_pages(m.owner_pfn(pfn), order)
        elif kind == "np" and live:
            pfn, order = live[a % len(live)]
            m.set_direct_map_invalid_noflush(m.owner_pfn(pfn) + a % (1 << order))
        elif kind == "shrink":
            m.shrink(a)
        elif kind == "compact":
            levels, prot = m.pmd_levels.copy(), m.prot.copy()
            free = m.counters()["nr_free_pages"]
            s = m.state
            movable_before = {int(p) for p in np.flatnonzero((s.pg_flags & PG_ALLOC) != 0)
                              if s.pg_mt[p] == MIGRATE_MOVABLE}
            moves = m.compact(a, b)
            assert (m.pmd_levels == levels).all() and (m.prot == prot).all()
            assert m.counters()["nr_free_pages"] == free
            assert set(moves) <= movable_before
            for new in moves.values():
                assert s.pg_flags[new] & PG_ALLOC and s.pg_mt[new] == MIGRATE_MOVABLE
        assert m.check() == [], (kind, a, b)
    for pfn, order in live:
        m.free_pages(m.owner_pfn(pfn), order)
    assert m.check() == []


def test_owners_follow_migration_in_the_event_loop():
    """A run that fragments free memory (thp_churn), with proactive compaction at its most
    eager, window by window (the stream grows and replaces lv.a_pfn between windows): a_pfn
    of every live allocation slot points at its block after migrations
    (invariants.check_owners), and migrations happened."""
    from sim.invariants import check_state
    from sim.layout import C_PGMIGRATE_SUCCESS
    from sim.simulate import Run
    from sim.hydra_conf import to_sim_config

    sc = to_sim_config(sim.load_config(["machine=small", "workload=thp_churn", "workload.duration_s=600",
                                        "machine.compaction_proactiveness=100", "window_s=60"]))
    run = Run(sc)
    windows = 0
    while run.step():
        windows += 1
        assert run.s.alloc_pfn is run.stream.lv.a_pfn
        assert check_state(run.s) == []
    assert windows > 2
    s = run.s
    assert s.ctr[C_PGMIGRATE_SUCCESS] > 0
    a_pfn = run.stream.lv.a_pfn
    live = np.flatnonzero(a_pfn >= 0)
    assert (s.pg_owner[a_pfn[live]] == live).all()


def test_checkpoint_keeps_owners(tmp_path):
    """A run resumed from a checkpoint (16-byte page records with pg_owner) gives the counters
    of a run never stopped, compaction on."""
    over = ["machine=small", "workload=thp_churn", "workload.duration_s=240", "window_s=60",
            "machine.compaction_proactiveness=100"]
    whole = sim.simulate(sim.load_config(over)).counters
    from sim import checkpoint
    from sim.hydra_conf import to_sim_config
    from sim.invariants import check_state
    from sim.simulate import Run

    sc = to_sim_config(sim.load_config(over))
    run = Run(sc)
    run.step()
    run.step()
    checkpoint.save(tmp_path / "c.npz", run)
    resumed = checkpoint.load_if_matches(tmp_path / "c.npz", sc, Run)
    assert resumed is not None and check_state(resumed.s) == []
    while resumed.step():
        pass
    resumed.finish()
    got = resumed.result(0.0).counters
    assert got["pgmigrate_success"] > 0
    for k in whole:
        if k not in ("events_per_second",):
            assert got[k] == whole[k], k


def test_compaction_off_is_the_model_without_compaction():
    over = ["machine=small", "workload.duration_s=30"]
    off = sim.simulate(sim.load_config(over + ["machine.compaction=false"])).counters
    assert off["compact_stall"] == off["pgmigrate_success"] == off["compact_daemon_wake"] == 0
    on = sim.simulate(sim.load_config(over)).counters
    assert on["thp_fault_alloc"] + on["thp_fault_fallback"] == off["thp_fault_alloc"] + off["thp_fault_fallback"] > 0
    assert 0 <= on["fragmentation_score"] <= 100


def test_compaction_skips_blocks_as_large_as_the_request_and_low_mark_for_costly_orders():
    """skip_isolation_on_order: a movable block of >= the requested order is not migrated;
    compaction_suitable: a costly order needs the low watermark + compact_gap free (6.1)."""
    m = Machine(MachineConfig(**SMALL))
    big = []
    while (p := m.alloc_pages(6, "movable")) is not None and len(big) < 256:
        big.append(p)
    small = fill_movable(m)
    for p in small[::2]:
        m.free_pages(p, 0)
    moves = m.compact(6)
    assert moves, m.compact_result
    assert set(moves) <= set(small[1::2])  # only order-0 pages moved, no order-6 block
    c = m.counters()
    low = c["wmark_low"]
    m2 = Machine(MachineConfig(**SMALL))
    pfns = fill_movable(m2)
    keep = low + (2 << 9) - m2.counters()["nr_free_pages"]  # free pages end exactly at low + gap
    for p in pfns[::2][:keep]:
        m2.free_pages(p, 0)
    assert m2.counters()["nr_free_pages"] == low + (2 << 9)
    assert m2.compact(9) == {} and m2.compact_result == "skipped"


def test_a_costly_allocation_direct_compacts():
    """__alloc_pages_slowpath: a costly order that finds no free block compacts (async), then
    takes the block compaction made; compact_stall / compact_success count it, the moved
    pages' owners follow (owner_pfn)."""
    m = Machine(MachineConfig(**SMALL))
    pfns = fill_movable(m)
    for p in pfns[::2]:
        m.free_pages(p, 0)
    assert m.free_2m_blocks() == 0 and m.counters()["compact_stall"] == 0
    pfn = m.alloc_pages(9, "movable")
    c = m.counters()
    assert pfn is not None and pfn % 512 == 0
    assert c["compact_stall"] == 1 and c["compact_success"] == 1 and c["pgmigrate_success"] > 0
    moved = [p for p in pfns[1::2] if m.owner_pfn(p) != p]
    assert moved and all(m.state.pg_flags[m.owner_pfn(p)] & PG_ALLOC for p in moved)
    assert m.check() == []
    off = Machine(MachineConfig(**SMALL, compaction=False))
    pfns = fill_movable(off)
    for p in pfns[::2]:
        off.free_pages(p, 0)
    assert off.alloc_pages(9, "movable") is None and off.counters()["compact_stall"] == 0


def test_scanners_meeting_after_a_resumed_run_is_partial_skipped():
    """__compact_finished: the scanners meeting ends a run COMPACT_COMPLETE when it started at
    the zone start (whole_zone), else COMPACT_PARTIAL_SKIPPED; both defer the order."""
    m = Machine(MachineConfig(**SMALL))
    pfns = fill_movable(m)
    for p in pfns[::2]:
        m.free_pages(p, 0)
    pinned = set()
    for p in pfns[1::2]:  # the lower half's pageblocks each keep one page that cannot move
        if p < 64 * 512 and p // 512 not in pinned:
            m.set_memory_ro(p, 1)
            pinned.add(p // 512)
    results = []
    while len(results) < 80:
        m.compact(9)
        results.append(m.compact_result)
        if m.compact_result != "success":
            break
        assert m.alloc_pages(9, "movable") is not None  # take the block; the next run resumes
    assert results[0] == "success" and results[-1] == "partial_skipped", results
    assert m.compact_defer_shift == 1
    m.compact(9)  # the cached positions were reset: a run over the whole zone
    assert m.compact_result == "complete" and m.compact_defer_shift == 2
