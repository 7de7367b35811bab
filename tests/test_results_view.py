"""How results read: run names, metric keys, the printed result, the sweep table's HTML and the
direct-map picture (no Ray, no store, no compile)."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pytest

from sim.config import SimConfig


@dataclass
class FakeJob:
    hash: str
    params: dict[str, Any]
    sc: SimConfig = field(default_factory=SimConfig)


def _jobs():
    out = []
    for pol in ("none", "unmapped_cache"):
        for mb in (16, 64):
            for s in range(2):
                sc = SimConfig()
                sc.policy.name = pol
                out.append(FakeJob(hashlib.sha256(f"{pol}{mb}{s}".encode()).hexdigest(),
                                   {"machine": "small", "policy": pol, "policy.max_blocks": mb,
                                    "workload.callers.modules.order_mix": "[0.5, 0.0, 0.5, 0.1, 0.2, 0.3]",
                                    "seed": s}, sc))
    return out


def test_run_names_are_the_swept_values_short_and_distinct():
    from sweeps.naming import RunNames

    jobs = _jobs()
    jobs[-1].params["workload.callers.modules.order_mix"] = "[0.5, 0.0, 0.5, 0.1, 0.2, 0.4]"  # cut short alike
    jobs[-1].params["seed"] = 0  # so that it reads as jobs[-2]
    n = RunNames(jobs)
    assert n.swept == ["policy", "policy.max_blocks", "workload.callers.modules.order_mix", "seed"]
    assert n.short["policy.max_blocks"] == "max_blocks" and n.short["seed"] == "seed"
    names = [n.name(j) for j in jobs]
    assert names[0] == "none mb=16 om=[0.5, 0.0, 0.5, 0.1, ... s0"
    assert len(set(names)) == len(jobs)  # the two that read alike get their hash
    assert all(len(x) <= 60 for x in names)
    p = n.params(jobs[3])
    assert p["max_blocks"] == "64" and p["seed"] == "1" and p["policy"] == "none" and "mem_mib" in p
    assert n.swept_values(jobs[3]) == {"policy": "none", "max_blocks": "64", "seed": "1",
                                       "order_mix": "[0.5, 0.0, 0.5, 0.1, 0.2, 0.3]"}


def test_metric_keys_headline_first_groups_units():
    from sweeps.metric_names import final_metrics, metric_key, ts_key

    c = {"direct_map_level2_splits": 3, "DirectMap4k": 8192, "DirectMap2M": 4096, "unmapped_cache_held_pages": 512,
         "alloc_fail": 0, "alloc_fail_order_3": 0, "nr_free_order_9": 4, "events_per_second": 1e7,
         "pageblocks_movable": 7, "unmapped_cache_hits": 5, "pgalloc": 9, "tlb_flush_all": 2,
         "tlb_flush_kernel_range": 3, "tlb_flush_kernel_pages": 40}
    m = final_metrics(c)
    assert m["0_headline/direct_map_level2_splits"] == 3 and m["0_headline/DirectMap4k_kB"] == 8192
    assert m["0_headline/memory_held_MiB"] == 2.0 and m["cache/unmapped_cache_held_pages"] == 512
    assert m["0_headline/tlb_flush_all"] == 2 and m["0_headline/tlb_flush_kernel_range"] == 3
    assert m["0_headline/tlb_flush_kernel_pages"] == 40 and "direct_map/tlb_flush_all" not in m
    assert m["order/alloc_fail_order_3"] == 0 and m["order/nr_free_order_9"] == 4
    assert m["perf/events_per_second"] == 1e7 and m["direct_map/DirectMap2M_kB"] == 4096
    assert m["pageblocks/pageblocks_movable"] == 7 and m["alloc/pgalloc"] == 9
    assert "direct_map/direct_map_level2_splits" not in m  # a headline as it is: not twice
    assert sorted(m)[0].startswith("0_headline/")
    assert metric_key("DirectMap4k") == "direct_map/DirectMap4k_kB" and ts_key("DirectMap4k") == "ts/DirectMap4k_kB"


def _table():
    rows = []
    for pol, l2, held in (("none", 100.0, 0.0), ("none", 120.0, 0.0), ("unmapped_cache", 11.0, 512.0),
                          ("unmapped_cache", 13.0, 1024.0)):
        rows.append({"run": f"{pol} s{len(rows)}", "status": "done", "policy": pol, "direct_map_level2_splits": l2,
                     "direct_map_level3_splits": 1.0, "DirectMap4k": 4 * 2048 * l2, "alloc_fail": 0.0,
                     "unmapped_cache_held_pages": held, "unmapped_cache_stranded_pages": 0.0})
    df = pl.DataFrame(rows)
    return df.with_columns((pl.col("unmapped_cache_held_pages") / 256).alias("memory_held_MiB"),
                           (pl.col("DirectMap4k") / 1024).alias("DirectMap4k_MiB"),
                           pl.lit(0.0).alias("memory_stranded_MiB"))


def test_result_lines_state_the_result_within_100_columns():
    from sweeps.aggregate import parent_metrics, result_lines

    lines = result_lines(_table())
    assert all(len(x) <= 100 for x in lines)
    assert lines[0].split()[:4] == ["policy", "runs", "L2", "splits"]
    assert "unmapped_cache: 89 % fewer level-2 splits than none (110 -> 12 per run), holding 3.0 MiB" in lines[-2]
    pm = parent_metrics(_table())
    assert pm["0_headline/none/direct_map_level2_splits"] == 110 and pm["0_headline/unmapped_cache/memory_held_MiB"] == 3


def test_sweep_table_html_and_summary_figure(tmp_path):
    from sweeps.aggregate import html_table, plot

    jobs = _jobs()
    html = html_table(_table(), jobs, "sweep smoke", "python -m sweeps +sweep=smoke")
    assert "<table id='sweep-table'>" in html and "unmapped_cache s2" in html and "89 % fewer" in html
    paths = plot(_table(), jobs, tmp_path)
    assert [p.name for p in paths] == ["summary.png"]  # policy and seed are no x axis
    assert paths[0].stat().st_size > 1000


def test_summary_figure_groups_bars_by_the_swept_categories(tmp_path):
    """A policy x workload sweep (the designs preset): the summary draws one group of bars per
    workload, one bar per policy, for every headline quantity; the numeric axis keeps its line plot."""
    import matplotlib.axes

    from sweeps.aggregate import PLOTS, bar_groups, plot

    rows, jobs = [], []
    for wl in ("mixed", "vm_host", "secretmem_heavy"):
        for pol, l2 in (("none", 100.0), ("freetype", 12.0)):
            for s in range(2):
                params = {"policy": pol, "workload": wl, "seed": s, "policy.max_blocks": 16 * (s + 1)}
                sc = SimConfig()
                sc.policy.name = pol
                jobs.append(FakeJob(hashlib.sha256(repr(params).encode()).hexdigest(), params, sc))
                rows.append({"status": "done", "policy": pol, "workload": wl, "seed": s,
                             "policy.max_blocks": 16 * (s + 1),
                             "direct_map_level2_splits": l2 + s, "direct_map_level3_splits": 1.0,
                             "memory_held_MiB": 0.0 if pol == "none" else 64.0, "memory_stranded_MiB": 2.0,
                             "alloc_fail": 0.0, "tlb_flush_kernel_range": 3e6 if pol == "none" else 5e3,
                             "tlb_flush_kernel_pages": 3e6, "tlb_flush_all": 4.0})
    df = pl.DataFrame(rows)
    assert bar_groups(df, ["workload", "policy.max_blocks"]) == ["workload"]
    bars = []
    orig = matplotlib.axes.Axes.bar

    def spy(self, x, height, *a, **k):
        bars.append((self.get_title(), k.get("label"), list(height)))
        return orig(self, x, height, *a, **k)

    matplotlib.axes.Axes.bar = spy
    try:
        paths = plot(df, jobs, tmp_path)
    finally:
        matplotlib.axes.Axes.bar = orig
    assert [p.name for p in paths] == ["summary.png", "sweep_policy.max_blocks.png"]
    assert len(bars) == 2 * len(PLOTS)  # per quantity one bar series per policy ...
    assert all(len(h) == 3 for _, _, h in bars)  # ... of one bar per workload
    assert bars[0][1:] == ("none", [100.5, 100.5, 100.5]) and bars[1][1:] == ("freetype", [12.5, 12.5, 12.5])


def test_directmap_picture_rows_are_addresses_and_padding_is_not_a_hole(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sim import picture

    assert picture.grid_width(512) == 32 and picture.grid_width(8 * 512) == 512 and picture.grid_width(600) == 64
    codes = np.full(600, picture.R_2M, np.uint8)
    codes[100:110] = picture.R_HOLE
    captured = {}
    import matplotlib.axes

    orig = matplotlib.axes.Axes.imshow

    def spy(self, X, *a, **k):
        captured["grid"] = np.asarray(X)
        captured["ax"] = self
        return orig(self, X, *a, **k)

    matplotlib.axes.Axes.imshow = spy
    try:
        picture.save_png(codes, tmp_path / "dm.png", "test")
    finally:
        matplotlib.axes.Axes.imshow = orig
    grid = captured["grid"]
    assert grid.shape == (10, 64)
    assert (grid.ravel()[600:] == picture.R_PAD).all() and picture.R_PAD != picture.R_HOLE
    labels = [t.get_text() for t in captured["ax"].get_yticklabels()]
    assert labels[:3] == ["0 GiB", "128 MiB", "256 MiB"]  # 64 cells x 2 MiB per row
    assert (tmp_path / "dm.png").stat().st_size > 1000


@pytest.mark.parametrize("n", [1, 7, 512, 4096, 1 << 19])
def test_grid_width_is_a_power_of_two(n):
    from sim.picture import grid_width

    w = grid_width(n)
    assert w & (w - 1) == 0 and 1 <= w <= 512


def test_model_compiles_once_per_machine_others_wait_and_are_told(tmp_path, monkeypatch):
    """Two workers start on a cold cache: one compiles under the lock, the other waits, both
    are told; afterwards the cache counts as warm (sim/jitcache.py; the compile is faked)."""
    import threading

    import numba

    from sim import jitcache

    if numba.config.DISABLE_JIT:
        pytest.skip("no compile without the JIT")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(jitcache, "_warm_key", None)
    monkeypatch.setattr(jitcache, "_loop_cached", lambda: False)
    monkeypatch.setattr(jitcache, "_loop_compiled", lambda: True)
    calls = []
    started = threading.Event()

    def fake_compile(cold):
        calls.append(cold)
        started.set()
        time.sleep(1.0)
        (tmp_path / "engine.run_events-1.py311.nbi").write_bytes(b"x")

    monkeypatch.setattr(jitcache, "_compile_model", fake_compile)
    said: list[str] = []
    out = [None, None]

    def worker(i):
        out[i] = jitcache.ensure_warm(said.append)

    t1 = threading.Thread(target=worker, args=(0,))
    t1.start()
    started.wait(30)
    t2 = threading.Thread(target=worker, args=(1,))
    t2.start()
    t1.join(30)
    t2.join(30)
    assert calls == [True]  # one compile, from a cold cache
    assert out[0] is not None and out[0] >= 1.0 and out[1] is None
    assert any(m.startswith(f"compiling the model for this machine, once: about {jitcache.estimated_compile_s()} s")
               for m in said), said
    assert any(m.startswith("waiting for another process compiling the model") for m in said), said
    assert jitcache.is_warm() and not jitcache.needs_compile()
    assert jitcache.expected_compile_s() == round(float(f"{out[0]:.1f}"))  # as written: seconds to 0.1 s


def test_compile_estimate_scales_with_this_machines_speed(monkeypatch):
    """Before a compile was measured here, the wait is guessed from the reference machine's
    compile, scaled by a probe of this machine's single-threaded speed and its CPUs."""
    from sim import jitcache

    try:
        for cpus, slower in ((2, 1.0), (2, 3.0), (1, 2.0)):
            jitcache.estimated_compile_s.cache_clear()
            monkeypatch.setattr(jitcache, "usable_cpus", lambda: cpus)
            monkeypatch.setattr(jitcache, "_cpu_probe_s", lambda: jitcache.REF_PROBE_S * slower)
            assert jitcache.estimated_compile_s() == round(jitcache.REF_COMPILE_S[cpus] * slower)
    finally:
        jitcache.estimated_compile_s.cache_clear()
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/nonexistent-dmfrag-cache")  # nothing measured there
    monkeypatch.setattr(jitcache, "_cpu_probe_s", lambda: jitcache.REF_PROBE_S)
    monkeypatch.setattr(jitcache, "usable_cpus", lambda: 2)
    assert jitcache.expected_compile_s() == jitcache.REF_COMPILE_S[2]
    jitcache.estimated_compile_s.cache_clear()
