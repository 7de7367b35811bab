"""Step API misuse: every call checks its handle, size, order, pfn and migratetype and raises a
ValueError naming the argument; no sequence of misuse and legitimate calls corrupts the state
(`check()` recounts every invariant)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import Machine, MachineConfig
from sim.config import POLICIES, PolicyConfig

JUNK = st.sampled_from([1.5, -1, 11, 1 << 40, "2", None, True, float("nan")])
CPA = ["set_memory_ro", "set_memory_rw", "set_memory_np", "set_memory_p", "set_memory_rox"]

op = st.one_of(
    # legitimate calls
    st.tuples(st.just("alloc"), st.integers(0, 10), st.sampled_from(["unmovable", "movable", "reclaimable"]),
              st.booleans()),
    st.tuples(st.just("free"), st.integers(0, 1 << 20), st.none(), st.none()),
    st.tuples(st.just("pack_alloc"), st.integers(1, 200000), st.none(), st.none()),
    st.tuples(st.just("pack_free"), st.integers(0, 1 << 20), st.none(), st.none()),
    st.tuples(st.just("shrink"), st.integers(0, 4096), st.none(), st.none()),
    st.tuples(st.just("drain"), st.none(), st.none(), st.none()),
    # misuse
    st.tuples(st.just("double_free"), st.integers(0, 1 << 20), st.none(), st.none()),
    st.tuples(st.just("wrong_order"), st.integers(0, 1 << 20), st.integers(0, 10), st.none()),
    st.tuples(st.just("free_random"), st.integers(-5, 1 << 19), st.integers(-1, 12), st.none()),
    st.tuples(st.just("pack_wrong_size"), st.integers(0, 1 << 20), st.integers(1, 4096), st.none()),
    st.tuples(st.just("pack_double_free"), st.integers(0, 1 << 20), st.none(), st.none()),
    st.tuples(st.just("pack_random_handle"), st.integers(-(1 << 30), 1 << 20), st.integers(1, 5000), st.none()),
    st.tuples(st.just("junk_order"), JUNK, st.none(), st.none()),
    st.tuples(st.just("junk_mt"), st.sampled_from(["unmapped", "MOVABLE", "", 1, None]), st.none(), st.none()),
    st.tuples(st.just("junk_pfn"), st.sampled_from([-1, 1 << 40, 2.5, "0", None]), st.sampled_from(CPA),
              st.integers(-2, 1 << 20)),
    st.tuples(st.just("junk_query"), JUNK, st.sampled_from(["free_list", "pageblock_migratetype", "mapping_level",
                                                            "cpu", "shrink"]), st.none()),
)


def _misuse(fn, *args):
    with pytest.raises(ValueError):
        fn(*args)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=60))
def test_misuse_raises_and_never_corrupts(policy, ops):
    knobs = {"release": "4k"} if policy == "grouped_pages" else {}
    m = Machine(MachineConfig(mem_mib=256, cpus=2, pcp=True), PolicyConfig(name=policy, **knobs))
    packs = policy in ("prog_pack", "execmem_rox")
    live, freed, images, gone = [], [], [], []
    for kind, a, b, c in ops:
        if kind == "alloc":
            pfn = m.alloc_pages(a, b, unmapped=c)
            if pfn is not None:
                live.append((pfn, a))
        elif kind == "free" and live:
            pfn, order = live.pop(a % len(live))
            m.free_pages(pfn, order)
            freed.append((pfn, order))
        elif kind == "pack_alloc" and packs and a <= 2 * 1024 * 1024:
            try:
                h = m.bpf_prog_pack_alloc(a)
            except RuntimeError:  # no pack slot left
                h = None
            if h is not None:
                images.append((h, a))
        elif kind == "pack_free" and images:
            h, size = images.pop(a % len(images))
            m.bpf_prog_pack_free(h, size)
            gone.append((h, size))
        elif kind == "shrink":
            m.shrink(a)
        elif kind == "drain":
            m.drain_all_pages()
        elif kind == "double_free" and freed:
            pfn, order = freed[a % len(freed)]
            if (pfn, order) not in live:  # not handed out again since
                _misuse(m.free_pages, pfn, order)
        elif kind == "wrong_order" and live:
            pfn, order = live[a % len(live)]
            if b != order:
                _misuse(m.free_pages, pfn, b)
        elif kind == "free_random":
            if (a, b) not in live:
                _misuse(m.free_pages, a, b)
        elif kind == "pack_wrong_size" and images:
            h, size = images[a % len(images)]
            if (size + 63) // 64 != (b + 63) // 64:
                _misuse(m.bpf_prog_pack_free, h, b)
        elif kind == "pack_double_free" and gone:
            h, size = gone[a % len(gone)]
            if h not in [i for i, _ in images]:
                _misuse(m.bpf_prog_pack_free, h, size)
        elif kind == "pack_random_handle":
            if a not in [i for i, _ in images]:
                _misuse(m.bpf_prog_pack_free, a, b)
        elif kind == "junk_order":
            _misuse(m.alloc_pages, a, "movable")
            _misuse(m.free_list, a, "movable")
            if live:
                _misuse(m.free_pages, live[0][0], a)
        elif kind == "junk_mt":
            _misuse(m.alloc_pages, 0, a)
            if a != "unmapped":
                _misuse(m.free_list, 0, a)
        elif kind == "junk_pfn":
            _misuse(getattr(m, b), a, 1)
            _misuse(m.set_direct_map_invalid_noflush, a)
            if c <= 0 or c > 256 * 256:
                _misuse(getattr(m, b), 0, c)
        elif kind == "junk_query":
            if b == "cpu":
                with pytest.raises(ValueError):
                    m.cpu = a
            elif b == "shrink":  # shrink(None): the policy's own batch; any count >= 0 is valid
                if a is not None and not (isinstance(a, int) and not isinstance(a, bool) and a >= 0):
                    _misuse(m.shrink, a)
            elif b == "free_list":
                _misuse(m.free_list, a, "movable")
            else:
                if not (isinstance(a, int) and not isinstance(a, bool) and 0 <= a < 256 * 256):
                    _misuse(getattr(m, b), a)
    assert m.check() == []


def test_bpf_prog_pack_free_wrong_size_and_double_free_are_refused():
    m = Machine(MachineConfig(mem_mib=256), PolicyConfig(name="prog_pack"))
    h = m.bpf_prog_pack_alloc(500)
    with pytest.raises(ValueError, match="size"):
        m.bpf_prog_pack_free(h, 5000)
    m.bpf_prog_pack_free(h, 500)
    with pytest.raises(ValueError, match="handle"):
        m.bpf_prog_pack_free(h, 500)
    assert m.bpf_prog_packs() == [] and m.check() == []
    with pytest.raises(ValueError, match="order"):
        m.alloc_pages(1.5)
    with pytest.raises(ValueError, match="migratetype"):
        m.free_list(0, "bogus")
    with pytest.raises(ValueError, match="pfn"):
        m.pageblock_migratetype(-1)
    pfn = m.alloc_pages(0)
    m.set_direct_map_invalid_noflush(pfn)  # splits: page-table pages allocated
    pt = [int(p) for p in m.state.pmd_pt if p >= 0]
    assert pt
    with pytest.raises(ValueError, match="page table"):
        m.free_pages(pt[0], 0)
    assert m.check() == []
