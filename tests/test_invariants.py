"""Property tests: random sequences of kernel calls keep the state's invariants
(pages conserved, no page both free and allocated, counters equal the arrays)."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import Machine, MachineConfig

MT = ["unmovable", "movable", "reclaimable"]

op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 10), st.sampled_from(MT)),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("cpa"), st.integers(0, 10_000), st.sampled_from(
        ["set_direct_map_invalid_noflush", "set_direct_map_default_noflush", "set_memory_ro",
         "set_memory_rw", "set_memory_x", "set_memory_nx", "set_memory_np", "set_memory_p",
         "set_memory_rox"])),
    st.tuples(st.just("cpu"), st.integers(0, 1), st.none()),
    st.tuples(st.just("drain"), st.none(), st.none()),
)


def run_ops(m: Machine, ops) -> None:
    live = []
    for kind, a, b in ops:
        if kind == "alloc":
            pfn = m.alloc_pages(a, b)
            if pfn is not None:
                live.append((pfn, a))
        elif kind == "free" and live:
            pfn, order = live.pop(a % len(live))
            m.free_pages(pfn, order)
        elif kind == "cpa" and live:
            pfn, order = live[a % len(live)]
            n = 1 << order
            if b.startswith("set_direct_map"):
                getattr(m, b)(pfn + a % n)
            else:
                getattr(m, b)(pfn, n)
        elif kind == "cpu":
            m.cpu = a
        elif kind == "drain":
            m.drain_all_pages()
    return live


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=120), pcp=st.booleans(), gb=st.booleans(), collapse=st.booleans(),
       nofrag=st.booleans())
def test_random_calls_keep_invariants(ops, pcp, gb, collapse, nofrag):
    mc = MachineConfig(mem_mib=2048, cpus=2, pcp=pcp, direct_gbpages=gb, cpa_collapse=collapse,
                       alloc_nofragment=nofrag, kernel_image_mib=16, holes=[[1048576 + 4096, 8192]])
    m = Machine(mc)
    live = run_ops(m, ops)
    assert m.check() == []
    c = m.counters()
    assert c["DirectMap4k"] + c["DirectMap2M"] + c["DirectMap1G"] == (2048 * 1024 - 8192)
    allocated = sum(1 << o for _, o in live) + c["direct_map_pt_pages"]
    assert c["nr_free_pages"] + c["nr_pcp_pages"] + allocated == c["managed_pages"]


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(op, max_size=80))
def test_freeing_everything_restores_free_memory(ops):
    m = Machine(MachineConfig(mem_mib=1024, cpus=2, pcp=True))
    live = run_ops(m, ops)
    for pfn, order in live:
        m.free_pages(pfn, order)
    m.drain_all_pages()
    c = m.counters()
    assert c["nr_free_pages"] == c["managed_pages"] - c["direct_map_pt_pages"]
    assert m.check() == []


policy_op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 10), st.sampled_from(MT)),
    st.tuples(st.just("unmapped"), st.integers(0, 3), st.none()),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("shrink"), st.integers(0, 2048), st.none()),
    st.tuples(st.just("pack"), st.integers(1, 70_000), st.none()),
    st.tuples(st.just("drain"), st.none(), st.none()),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(policy_op, max_size=80),
       policy=st.sampled_from(["none", "unmapped_cache", "migratetype", "grouped_pages", "prog_pack", "execmem_rox",
                               "freetype"]),
       release=st.sampled_from(["2m", "4k"]))
def test_policies_keep_invariants(ops, policy, release):
    """The policies' caches, shrinkers and code packs keep every invariant, including the
    incrementally kept pageblock pollution (== the O(pages) walk == a numpy recount)."""
    from sim.config import POLICY_KNOBS, PolicyConfig

    release = "4k" if policy == "grouped_pages" else release  # it frees single 4K pages
    knobs = {"release": release} if "release" in POLICY_KNOBS[policy] else {}
    m = Machine(MachineConfig(mem_mib=1024, cpus=2, pcp=True), PolicyConfig(name=policy, **knobs))
    live, packs = [], []
    for kind, a, b in ops:
        if kind == "alloc" or kind == "unmapped":
            pfn = m.alloc_pages(a, b or "unmovable", unmapped=kind == "unmapped")
            if pfn is not None:
                live.append((pfn, a))
        elif kind == "free" and (live or packs):
            if packs and (a % 2 or not live):
                m.bpf_prog_pack_free(*packs.pop(a % len(packs)))
            else:
                m.free_pages(*live.pop(a % len(live)))
        elif kind == "shrink":
            m.shrink(a)
        elif kind == "pack" and policy in ("prog_pack", "execmem_rox") and a <= 2 * 1024 * 1024:
            h = m.bpf_prog_pack_alloc(a)
            if h is not None:
                packs.append((h, a))
        elif kind == "drain":
            m.drain_all_pages()
        assert m.check() == [], (kind, a, b)
    for pfn, order in live:
        m.free_pages(pfn, order)
    for h, size in packs:
        m.bpf_prog_pack_free(h, size)
    m.shrink()
    assert m.check() == []
