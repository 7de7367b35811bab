"""The streamed workload: window-invariant results, bounded memory, checkpoints, saved machines."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.config import ConfigError
from sim.hydra_conf import to_sim_config
from sim.layout import AF_ACTION, decode, pack_event_word
from sim.workload import Stream, sort_frees

SMALL = ["machine=small", "workload=mixed", "workload.duration_s=90"]


def stream_events(overrides, window_s):
    sc = to_sim_config(sim.load_config(overrides))
    st_ = Stream(sc.workload, managed_pages=1 << 16, ncpus=4, seed=sc.seed, window_s=window_s)
    out = []
    while (w := st_.next_window()) is not None:
        out.append(w)
    return st_, out


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31), duration=st.sampled_from([0, 1, 30, 200]), window=st.sampled_from([0.7, 5, 60]),
       workload=st.sampled_from(["mixed", "bpf_heavy", "module_churn"]))
def test_windows_are_well_formed(seed, duration, window, workload):
    """Time order within and across windows; a slot is allocated, then freed at most once,
    before it is reused; no event at or after the duration; fill phase before t = 0."""
    _, wins = stream_events([f"workload={workload}", f"workload.duration_s={duration}",
                             "workload.target_utilisation=0.3", f"seed={seed}"], window)
    t = np.concatenate([w.ev_time for w in wins] or [np.zeros(0)])
    code = np.concatenate([w.ev_code for w in wins] or [np.zeros(0, np.int64)])
    assert np.all(np.diff(t) >= 0)
    assert np.all(t < max(duration, 0) + 1e-12)
    live = set()
    for c in code:  # alloc then free, per slot, in event order
        slot, free = int(c >> 1), int(c & 1)
        if free:
            assert slot in live
            live.remove(slot)
        else:
            assert slot not in live
            live.add(slot)


def _same_events(a, b):
    ta = np.concatenate([w.ev_time for w in a])
    tb = np.concatenate([w.ev_time for w in b])
    ia = np.concatenate([w.ev_info for w in a])
    ib = np.concatenate([w.ev_info for w in b])
    fa = np.concatenate([w.ev_code & 1 for w in a])
    fb = np.concatenate([w.ev_code & 1 for w in b])
    return np.array_equal(ta, tb) and np.array_equal(ia, ib) and np.array_equal(fa, fb)


def test_window_size_does_not_change_the_event_sequence():
    _, a = stream_events(SMALL, 3.0)
    _, b = stream_events(SMALL, 90.0)
    _, c = stream_events(SMALL, 1000.0)
    assert _same_events(a, b) and _same_events(a, c)


def test_window_size_does_not_change_results():
    """Bit-identical counters and time series for three window sizes."""
    res = [sim.simulate(sim.load_config(SMALL + [f"window_s={w}"])) for w in (2.5, 30, 600)]
    for r in res[1:]:
        assert r.counters | {"events_per_second": 0} == res[0].counters | {"events_per_second": 0}
        assert r.timeseries.equals(res[0].timeseries)


@pytest.mark.parametrize("policy", ["none", "unmapped_cache", "freetype"])
def test_window_built_next_to_the_loop_changes_nothing(tmp_path, policy):
    """Run.step(overlap=True) admits the next window before the loop and builds it in a thread
    while the loop runs: bit-identical results to one window at a time, with reclaim, compaction
    and a policy's cache at work; checkpoints are taken with no window built ahead."""
    from sim import checkpoint
    from sim.simulate import Run

    ov = ["machine=small", "workload=thp_churn", "workload.duration_s=240", "window_s=7",
          f"policy={policy}"]
    one, both = (sim.simulate(sim.load_config(ov), overlap=o) for o in (False, True))
    drop = {"events_per_second": 0}
    assert both.counters | drop == one.counters | drop
    assert both.counters["kswapd_runs"] > 0 and both.counters["pgmigrate_success"] > 0
    assert np.array_equal(both.samples, one.samples) and np.array_equal(both.directmap, one.directmap)
    ck = ov + ["checkpoint_every_s=50", f"checkpoint_path={tmp_path / 'c.npz'}"]
    assert sim.simulate(sim.load_config(ck), overlap=True).counters | drop == one.counters | drop
    assert checkpoint._read(tmp_path / "c.npz")[1]["t"] == 203.0  # the last one: the first window end >= 200
    run = Run(to_sim_config(sim.load_config(ov)))
    run.step(overlap=True)
    with pytest.raises(RuntimeError, match="built ahead"):
        checkpoint.save(tmp_path / "d.npz", run)


def test_same_seed_same_stream_and_callers_independent():
    st_a, a = stream_events(SMALL, 30)
    _, b = stream_events(SMALL, 30)
    assert _same_events(a, b)
    _, c = stream_events(SMALL + ["seed=1"], 30)
    assert not _same_events(a, c)
    # adding a caller keeps every other caller's objects (keyed by the caller's name)
    extra = SMALL + ["++workload.callers={zz_new: {kind: vmalloc, rate_per_s: 3}}"]
    st_d, d = stream_events(extra, 30)
    # (by name: a caller's load-copy rows come after all the callers, so their index moves)
    names = lambda st_, ws: np.array(st_.names)[np.concatenate([decode(w.ev_info, "caller") for w in ws])]  # noqa: E731
    info = lambda ws: np.concatenate([w.ev_info for w in ws]) & ~pack_event_word(0, 255, 0, 0)  # noqa: E731
    others = names(st_d, d) != "zz_new"
    assert np.array_equal(names(st_d, d)[others], names(st_a, a))
    assert np.array_equal(info(d)[others], info(a))


def test_background_fill_reaches_its_share():
    sc = to_sim_config(sim.load_config(["workload=mixed", "workload.duration_s=0", "workload.target_utilisation=0.5"]))
    st_ = Stream(sc.workload, managed_pages=1 << 16, ncpus=4, seed=0, window_s=60)
    w = st_.next_window()
    pages = np.int64(1) << decode(w.ev_info, "order")
    callers = decode(w.ev_info, "caller")
    for ci, name in enumerate(st_.names):
        c = sc.workload.callers.get(name)
        if c is not None and c.background:
            got = pages[callers == ci].sum()
            assert got >= c.share * 0.5 * (1 << 16) and got - c.share * 0.5 * (1 << 16) <= 512 * 64, name


def test_on_alloc_action_flag_follows_the_callers_action_and_fraction():
    sc = to_sim_config(sim.load_config(["workload=mixed", "workload.duration_s=600"]))
    st_, wins = stream_events(["workload=mixed", "workload.duration_s=600"], 60)
    info = np.concatenate([w.ev_info[(w.ev_code & 1) == 0] for w in wins])
    acted = (decode(info, "flags") & AF_ACTION) != 0
    caller = decode(info, "caller")
    for ci, name in enumerate(st_.names):
        c = sc.workload.callers.get(name)  # None: a load copy's row (no action)
        frac = c.on_alloc_fraction if c is not None and c.on_alloc != "none" else 0.0
        mine = caller == ci
        if frac in (0.0, 1.0):
            assert np.all(acted[mine] == bool(frac)), name
        else:
            assert abs(acted[mine].mean() - frac) < 0.1, name


def test_live_state_does_not_grow_with_uptime():
    """The stream holds the live objects, not every object ever: the same after 10 and 60
    simulated minutes of steady state."""
    sizes = []
    for d in (600, 3600):
        st_, _ = stream_events(["workload=mixed", f"workload.duration_s={d}"], 60)
        sizes.append(st_.live_allocations)
    assert sizes[1] < 1.3 * sizes[0]


RUNNER = textwrap.dedent("""
    import sys, json, sim
    r = sim.simulate(sim.load_config(sys.argv[2:]))
    c = {k: v for k, v in r.counters.items() if k != "events_per_second"}
    open(sys.argv[1], "w").write(json.dumps(c, sort_keys=True))
""")


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    ov = ["machine=small", "workload=mixed", "workload.duration_s=1200", "window_s=20", "checkpoint_every_s=200",
          f"checkpoint_path={tmp_path / 'run.ckpt'}"]
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "a.json"), *ov])
    deadline = time.time() + 600
    while not (tmp_path / "run.ckpt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it wrote a checkpoint"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "a.json").exists()
    subprocess.run([sys.executable, str(script), str(tmp_path / "b.json"), *ov], check=True)
    whole = sim.simulate(sim.load_config(ov[:4]))
    want = {k: v for k, v in whole.counters.items() if k != "events_per_second"}
    import json

    assert json.loads((tmp_path / "b.json").read_text()) == json.loads(json.dumps(want, sort_keys=True))


def test_saved_machine_continues_as_if_never_stopped(tmp_path):
    path = tmp_path / "aged.npz"
    base = ["machine=small", "workload=mixed", "window_s=25"]
    sim.save_machine(sim.load_config(base + ["workload.duration_s=130"]), path)
    cont = sim.simulate(sim.load_config(base + ["workload.duration_s=300", f"machine.snapshot={path}"]))
    whole = sim.simulate(sim.load_config(base + ["workload.duration_s=300"]))
    drop = {"events_per_second": 0}
    assert cont.counters | drop == whole.counters | drop
    assert cont.timeseries.equals(whole.timeseries)
    # a policy acts from the snapshot on
    other = sim.simulate(sim.load_config(base + ["workload.duration_s=300", f"machine.snapshot={path}",
                                                 "policy=unmapped_cache"]))
    assert other.counters["unmapped_cache_hits"] > 0
    with pytest.raises(ConfigError, match="machine.mem_mib"):
        sim.simulate(sim.load_config(base + ["workload.duration_s=300", "machine.mem_mib=2048",
                                             f"machine.snapshot={path}"]))
    with pytest.raises(ConfigError, match=r"workload\.callers\.zz\."):  # a caller the saved machine lacks
        sim.simulate(sim.load_config(base + ["workload.duration_s=300", f"machine.snapshot={path}",
                                             "++workload.callers={zz: {kind: vmalloc, rate_per_s: 1, load_copy: 2}}"]))


@settings(max_examples=80, deadline=None)
@given(times=st.lists(st.one_of(st.floats(-1.0, 1e6, allow_nan=False), st.sampled_from([-0.5, 0.0, 7.0, 7.0])),
                      max_size=400),
       spread=st.sampled_from([1.0, 1e-3]), seed=st.integers(0, 2**31))
def test_sort_frees_orders_by_time_then_object_id(times, spread, seed):
    """The due frees in (free time, object id) order whatever order the calendar held them
    in: runs of equal times (heapsort past 32 in a bucket) and clustered times included, and
    enough entries for both counting passes."""
    rng = np.random.default_rng(seed)
    t = np.concatenate([np.array(times, np.float64), rng.random(rng.integers(0, 6000)) * spread])
    m = t.size
    gid = rng.permutation(m * 3)[:m].astype(np.int64)  # distinct ids
    head, n = np.arange(m, dtype=np.int32), rng.integers(1, 9, m).astype(np.int64)
    want = np.lexsort((gid, t))
    src = (t, gid, head, n)
    got = tuple(a.copy() for a in src)
    sort_frees(*got, *(np.empty_like(a) for a in src), np.empty(m // 2 + 2052, np.int64))
    for g, a in zip(got, src):
        assert np.array_equal(g, a[want])


def test_burst_and_poisson_arrivals_of_one_caller_merge_by_time():
    """A caller with `initial` objects at at_s and a rate: its Poisson arrivals run from t = 0
    (not from at_s), the burst comes at at_s, and the event sequence is the same for any
    window size (the two sources are merged by time, never out of order)."""
    cfg = ["machine=small", "workload=idle", "workload.duration_s=40",
           "++workload.callers={burst: {kind: vmalloc, initial: 50, at_s: 25, rate_per_s: 2, "
           "lifetime_s: {dist: fixed, value: 10}}}"]
    streams = [stream_events(cfg, w)[1] for w in (0.5, 7, 100)]
    assert _same_events(streams[0], streams[1]) and _same_events(streams[0], streams[2])
    names = list(to_sim_config(sim.load_config(cfg)).workload.callers)
    ws = streams[1]
    t = np.concatenate([w.ev_time for w in ws])
    mine = np.concatenate([decode(w.ev_info, "caller") for w in ws]) == names.index("burst")
    alloc = np.concatenate([(w.ev_code & 1) == 0 for w in ws])
    assert np.all(np.diff(t) >= 0)  # time order within and across windows
    arrivals = t[mine & alloc]
    assert np.count_nonzero(arrivals == 25.0) == 50  # the burst, at at_s
    poisson = arrivals[arrivals != 25.0]
    assert 50 <= poisson.size <= 110 and poisson.min() < 5.0  # ~2/s over 40 s, from t = 0
    frees = t[mine & ~alloc]
    assert np.count_nonzero(frees == 35.0) == 50  # the burst's fixed lifetime


MODULE_LIST = ["machine=small", "workload=oracle_base", "workload.duration_s=10",
               "++workload.callers={mods: {kind: module, initial: 5, at_s: 1, at_interval_s: 0.5, "
               "size_bytes: {dist: list, values: [8192, 40960, 4096]}, load_copy: 2, "
               "lifetime_s: {dist: forever}, on_alloc: ro, on_alloc_fraction: 1.0, on_free: reset}}"]


def test_module_list_loads_one_at_a_time_each_with_its_copy():
    """insmod of a module list: module k at at_s + k x at_interval_s, its size the k-th value of
    the list (cycled); load_module's copy (load_copy x the size, order-0 pages, no direct-map
    action) is allocated right before the module's pages and freed right after them, before
    the next module loads; the same events for any window size."""
    streams = [stream_events(MODULE_LIST, w) for w in (0.3, 7, 100)]
    assert _same_events(streams[0][1], streams[1][1]) and _same_events(streams[0][1], streams[2][1])
    st_, ws = streams[1]
    assert st_.names == ["mods", "mods:copy"]
    t = np.concatenate([w.ev_time for w in ws])
    info = np.concatenate([w.ev_info for w in ws])
    free = np.concatenate([w.ev_code & 1 for w in ws]).astype(bool)
    caller, order = decode(info, "caller"), decode(info, "order")
    acted = (decode(info, "flags") & AF_ACTION) != 0
    assert np.all(order == 0)
    expected = []  # (time, caller, is_free) in event order
    for k, size in enumerate([8192, 40960, 4096, 8192, 40960]):
        at, pages = 1 + 0.5 * k, size // 4096
        expected += [(at, 1, 0)] * (2 * pages) + [(at, 0, 0)] * pages + [(at + 1e-9, 1, 1)] * (2 * pages)
    assert list(zip(t.tolist(), caller.tolist(), free.astype(int).tolist())) == expected
    assert np.all(acted[caller == 0]) and not np.any(acted[caller == 1])


@pytest.mark.parametrize("override,key", [
    ("size_bytes: {dist: list}", "size_bytes.values"),
    ("size_bytes: {dist: list, values: [4096, -1]}", "size_bytes.values[1]"),
    ("size_bytes: {dist: list, values: [1e300]}", "size_bytes.values[0]"),
    ("size_bytes: {dist: fixed, value: 4096, values: [4096]}", "size_bytes.values"),
    ("allocs: {dist: list, values: [2, 0.5]}", "allocs.values[1]"),
    ("at_interval_s: 0.5", "at_interval_s"),  # without at_s: nothing to space
])
def test_bad_list_distribution_or_burst_is_refused_naming_its_key(override, key):
    cfg = ["workload=idle", f"++workload.callers={{m: {{kind: module, initial: 1, {override}}}}}"]
    with pytest.raises(ConfigError, match=r"workload\.callers\.m\." + key.replace(".", r"\.").replace("[", r"\[")):
        to_sim_config(sim.load_config(cfg))


def test_module_list_run_holds_only_the_modules_pages():
    """The same module list through the engine: every copy page is freed again (pgfree), the
    modules' 25 pages stay allocated and read-only in the direct map, and the free pages
    (buddy + per-CPU lists) are down by exactly those pages plus the page tables of the
    splits."""
    cfg = sim.load_config(MODULE_LIST)
    boot = sim.Machine(to_sim_config(cfg).machine).counters()
    c = sim.simulate(cfg).counters
    module_pages = (8192 + 40960 + 4096 + 8192 + 40960) // 4096
    assert c["pgfree"] == 2 * module_pages  # the copies, and nothing else
    assert c["pgalloc"] == 3 * module_pages + c["direct_map_pt_pages"] - boot["direct_map_pt_pages"]
    assert c["direct_map_ro_pages"] - boot["direct_map_ro_pages"] == module_pages
    free = lambda x: x["nr_free_pages"] + x["nr_pcp_pages"]  # noqa: E731
    assert free(boot) - free(c) == module_pages + c["direct_map_pt_pages"] - boot["direct_map_pt_pages"]
