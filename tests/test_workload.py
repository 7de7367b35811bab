"""The workload's event stream: time order, one alloc per allocation, frees after allocs."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.hydra_conf import to_sim_config
from sim.radix import argsort_stable
from sim.layout import AF_ACTION, decode
from sim.workload import generate, sorted_uniform


def stream(seed, duration, util, workload="mixed"):
    cfg = to_sim_config(sim.load_config([f"workload={workload}", f"workload.duration_s={duration}",
                                         f"workload.target_utilisation={util}"]))
    return generate(cfg.workload, managed_pages=1 << 16, ncpus=4, seed=seed)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), duration=st.sampled_from([0, 1, 30, 400]),
       util=st.floats(0.05, 0.9), workload=st.sampled_from(["mixed", "bpf_heavy", "module_churn"]))
def test_event_stream_is_well_formed(seed, duration, util, workload):
    es = stream(seed, duration, util, workload)
    ids, is_free = es.ev_code >> 1, es.ev_code & 1
    assert np.all(np.diff(es.ev_time) >= 0)  # time order
    assert np.all(es.ev_time < max(duration, 0) + 1e-12)
    # every allocation allocated exactly once, in id order (ids are allocation-time order)
    assert np.array_equal(ids[is_free == 0], np.arange(es.n_allocs))
    # a free at most once per allocation, always after its alloc
    freed = ids[is_free == 1]
    assert np.unique(freed).size == freed.size
    pos = np.empty(es.n_allocs, np.int64)
    pos[ids[is_free == 0]] = np.flatnonzero(is_free == 0)
    assert np.all(np.flatnonzero(is_free == 1) > pos[freed])
    assert np.array_equal(es.ev_info, es.a_info[ids])
    assert np.all(es.a_caller < len(es.caller_names))


def test_same_seed_same_stream_and_callers_independent():
    a, b = stream(7, 60, 0.5), stream(7, 60, 0.5)
    assert np.array_equal(a.ev_code, b.ev_code) and np.array_equal(a.ev_time, b.ev_time)
    assert not np.array_equal(stream(8, 60, 0.5).ev_time, a.ev_time)


def test_background_fill_reaches_its_share():
    es = stream(1, 0, 0.5)
    pages = np.ones(es.n_allocs, np.int64) << es.a_order
    for ci, name in enumerate(es.caller_names):
        share = sim.load_config(["workload=mixed"]).workload.callers[name].get("share")
        if share:  # background callers fill share x utilisation x managed pages before t = 0
            got = pages[es.a_caller == ci].sum()
            assert abs(got - share * 0.5 * (1 << 16)) <= 512, name


def test_on_alloc_action_flag_follows_the_callers_action_and_fraction():
    """AF_ACTION marks the allocations whose caller applies an on_alloc action (the loop
    calls apply_alloc_action only for those): all of them at on_alloc_fraction 1, about
    the fraction below 1, none for callers whose on_alloc is none."""
    es = stream(3, 600, 0.5)
    callers = sim.load_config(["workload=mixed"]).workload.callers
    acted = (decode(es.a_info, "flags") & AF_ACTION) != 0
    for ci, name in enumerate(es.caller_names):
        mine = es.a_caller == ci
        frac = callers[name].get("on_alloc_fraction", 1.0) if callers[name].get("on_alloc", "none") != "none" else 0.0
        if frac in (0.0, 1.0):
            assert np.all(acted[mine] == bool(frac)), name
        else:
            assert abs(acted[mine].mean() - frac) < 0.1, name


def test_sorted_uniform_is_sorted_and_uniform():
    x = sorted_uniform(np.random.default_rng(0), 200_000, -1.0, 3.0)
    assert np.all(np.diff(x) >= 0) and x[0] >= -1.0 and x[-1] < 3.0
    hist = np.histogram(x, bins=8, range=(-1, 3))[0]
    assert np.all(np.abs(hist - 25_000) < 5 * np.sqrt(25_000))
    assert sorted_uniform(np.random.default_rng(0), 0, 0.0, 1.0).size == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf])),
                max_size=300))
def test_radix_argsort_is_numpys_stable_argsort(values):
    """The free-time sort: the same permutation as np.argsort(kind="stable"), ties (and
    0.0 / -0.0) in index order, negative times (fill phase) before positive ones."""
    x = np.array(values, dtype=np.float64)
    assert np.array_equal(argsort_stable(x), np.argsort(x, kind="stable"))
