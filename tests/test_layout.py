"""The declared layout (sim/layout.py): counters, settings, event word, status codes; reading
counters is pure; every model function compiles exactly once."""
from __future__ import annotations

import hashlib

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sim
from sim import Machine, MachineConfig, layout
from sim.metrics import counters


def test_counters_are_numbered_densely_and_named_once():
    idx = sorted(i for _, i, _ in layout.COUNTER_NAMES)
    assert idx == list(range(layout.N_COUNTERS))
    names = [n for n, _, _ in layout.COUNTER_NAMES]
    assert len(names) == len(set(names))
    for c in layout.COUNTERS:  # every counter has its index constant, a unit and a group
        assert isinstance(getattr(layout, "C_" + c.const), int)
        assert c.unit and c.group and c.scale >= 1
    m = Machine(MachineConfig(mem_mib=1024))
    assert set(names) <= set(m.counters())  # all of them reported


def test_settings_and_scalars_are_separate_arrays():
    m = Machine(MachineConfig(mem_mib=1024))
    assert m.state.par.shape == (layout.N_SETTINGS,)
    assert m.state.var.shape == (layout.N_SCALARS,)
    assert {s.const for s in layout.SETTINGS}.isdisjoint({s.const for s in layout.SCALARS})


@given(st.integers(0, 10), st.integers(0, 249), st.integers(0, 4095), st.integers(0, 255), st.integers(0, 65535))
def test_event_word_round_trip(order, caller, cpu, flags, chunks):
    w = layout.pack_event_word(order, caller, cpu, flags, chunks)
    got = {f.name: int(layout.decode(w, f.name)) for f in layout.EVENT_WORD}
    assert got == {"order": order, "caller": caller, "cpu": cpu, "flags": flags, "chunks": chunks}
    fields = [f for f in layout.EVENT_WORD]
    for a, b in zip(fields, fields[1:]):
        assert a.shift + a.bits <= b.shift  # no overlap


def test_status_codes_are_distinct_where_they_meet():
    # a pfn-returning function's outcomes, an a_pfn entry's states and a fallback lookup's answers
    for group in ((layout.NO_PAGE, layout.NOT_SERVED, layout.AT_LIMIT),
                  (layout.A_FAILED, layout.A_GONE, layout.A_NOT_YET),
                  (layout.FALLBACK_NONE, layout.FALLBACK_TOO_SMALL),
                  (layout.CPA_OK, layout.CPA_ENOMEM, layout.CPA_EFAULT)):
        assert len(set(group)) == len(group)
    from sim.prog_pack import PACK_HANDLE_BASE
    assert PACK_HANDLE_BASE < min(layout.NO_PAGE, layout.NOT_SERVED, layout.AT_LIMIT, layout.A_NOT_YET)


def _digest(state) -> str:
    h = hashlib.sha256()
    for a in state:
        h.update(np.ascontiguousarray(a).view(np.uint8).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("policy", ["none", "migratetype", "unmapped_cache", "freetype"])
def test_reading_counters_is_pure(policy):
    m = Machine(MachineConfig(mem_mib=1024, direct_gbpages=False), policy=sim.policy_config(policy))
    pfns = [m.alloc_pages(0, "unmovable", unmapped=True) for _ in range(300)]
    for p in pfns[::2]:
        m.free_pages(p, 0)
    before = _digest(m.state)
    c1 = m.counters()
    assert _digest(m.state) == before
    assert m.counters() == c1
    if policy in ("migratetype", "freetype"):  # the cache view is derived from the unmapped free lists
        assert c1["unmapped_cache_free_pages"] + c1["unmapped_cache_used_pages"] == c1["unmapped_cache_held_pages"]
        assert c1["unmapped_cache_used_pages"] == 150


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="nothing is compiled under NUMBA_DISABLE_JIT")
def test_each_model_function_compiles_exactly_once():
    """jit.njit widens argument types so a model function is compiled once, not once per
    combination of argument types and literals (first compile 5.5 min -> 2 min); runs with and
    without the boot's own allocations share the loop's specialization."""
    from sim import jit, jitcache

    # the parallel first compile (sim/jitcache.py): its helper runs this config for the event
    # loop, and the other process compiles the loop's late callees and the step API's entry
    # points by signature; each must be the specialization the runs below use
    from sim.hydra_conf import to_sim_config
    from sim.simulate import Run

    run = Run(to_sim_config(sim.load_config(jitcache.TINY)))
    for disp, sig in jitcache.late_callees(run) + jitcache.step_api_entries(run):
        disp.compile(sig)
    sim.simulate(sim.load_config(jitcache.NO_BOOT_OPS))
    for pol in ("none", "unmapped_cache", "migratetype", "grouped_pages", "prog_pack", "execmem_rox", "freetype"):
        sim.simulate(sim.load_config(["machine=small", "workload=mixed", "workload.duration_s=2", f"policy={pol}"]))
        m = Machine(MachineConfig(mem_mib=1024), policy=sim.policy_config(pol))
        p = m.alloc_pages(1, "movable")
        m.set_memory_ro(p, 2)
        m.set_direct_map_invalid_noflush(p)
        m.flush_tlb_kernel_range(p, 1)
        m.free_pages(p, 1)
        q = m.alloc_pages(0, "unmovable", unmapped=True)
        if q is not None:
            m.free_pages(q, 0)
        m.drain_all_pages()
        m.shrink()
        counters(m.state)
        m.check()
    many = {d.py_func.__qualname__: len(d.signatures) for d in jit.MODEL_FUNCTIONS if len(d.signatures) > 1}
    assert not many, f"compiled more than once: {many}"
    # From a cold cache every model function the run reaches is compiled (one signature each);
    # from numba's on-disk cache only the entry points are loaded (their callees are linked
    # in), so the count proves the run compiled the model only when nothing came from disk.
    hits = sum(sum(d.stats.cache_hits.values()) for d in jit.MODEL_FUNCTIONS)
    if hits == 0:
        assert sum(len(d.signatures) for d in jit.MODEL_FUNCTIONS) > 20  # the run did compile the model


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="nothing is compiled under NUMBA_DISABLE_JIT")
def test_collector_off_while_compiling_and_on_after():
    """sim.jit turns Python's cyclic collector off for the duration of a compile (15 % of the
    first compile was gc), and back on, as it was, afterwards; a cache load is not a compile."""
    import gc

    from numba.core import event

    seen = []

    class Probe(event.Listener):
        def on_start(self, ev):
            seen.append(("start", gc.isenabled()))

        def on_end(self, ev):
            seen.append(("end", gc.isenabled()))

    probe = Probe()
    event.register("numba:compile", probe)
    try:
        def callee(x):
            return x + 1

        def caller(x):
            return inner(x) * 2

        inner = numba.njit(callee)
        f = numba.njit(caller)
        assert gc.isenabled()
        assert f(3) == 8
        assert gc.isenabled()
        gc.disable()
        try:
            g = numba.njit(lambda x: x - 1)
            assert g(3) == 2
            assert not gc.isenabled()  # a caller that had it off keeps it off
        finally:
            gc.enable()
    finally:
        event.unregister("numba:compile", probe)
    # caller, callee nested in it, lambda: off from each start on (sim.jit's listener runs
    # first); at the outermost end it has already put the collector back
    assert seen == [("start", False), ("start", False), ("end", False), ("end", True),
                    ("start", False), ("end", False)], seen


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="nothing is compiled under NUMBA_DISABLE_JIT")
def test_inlined_function_ir_made_once_names_distinct_per_call_site():
    """sim.jit makes an inline="always" model function's IR once per process and gives each
    call site a fresh identity: two inlined copies in one caller keep separate variables."""
    from numba.core.untyped_passes import ExtractByteCode

    built = []
    orig = ExtractByteCode.run_pass

    def counting(self, state):
        built.append(state.func_id.func_name)
        return orig(self, state)

    ns = {}
    exec("def twice(a, b):\n    t = a * 2\n    return t + b\n", ns)
    fn = ns["twice"]
    fn.__module__ = "sim._test_inline"  # a model function, as the IR cache sees it
    twice = numba.njit(inline="always")(fn)  # as sim.jit.njit_inline, without the disk cache

    @numba.njit
    def both(x, y):
        return twice(x, 1) - twice(y, 2)

    ExtractByteCode.run_pass = counting
    try:
        assert both(5, 3) == (11 - 8)
    finally:
        ExtractByteCode.run_pass = orig
    assert both.py_func(5, 3) == 3
    assert built.count("twice") == 1, built  # two call sites, its IR made once (numba: twice)
