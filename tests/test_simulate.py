"""simulate(), load_config(), validation and the `python -m sim` CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim
from sim import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["machine.mem_mib=256", "machine.kernel_image_mib=16", "machine.cpus=2", "workload=mixed",
        "workload.duration_s=20", "workload.target_utilisation=0.5"]


def stable(counters):
    return {k: v for k, v in counters.items() if k != "events_per_second"}


def test_load_config_applies_overrides():
    cfg = sim.load_config(["machine.mem_mib=65536", "workload=bpf_heavy", "seed=3"])
    assert cfg.machine.mem_mib == 65536 and cfg.seed == 3
    assert cfg.workload.name == "bpf_heavy" and cfg.workload.callers.bpf.rate_per_s == 50.0
    assert cfg.workload.callers.secretmem.on_alloc == "np"  # inherited from mixed
    cfg = sim.load_config(["workload.callers.bpf.order_mix=[0.5,0.5]"])
    assert list(cfg.workload.callers.bpf.order_mix) == [0.5, 0.5]


@pytest.mark.parametrize("override,key", [
    ("machine.mem_mib=0", "machine.mem_mib"),
    ("machine.cpus=5000", "machine.cpus"),
    ("workload.target_utilisation=1.5", "workload.target_utilisation"),
    ("workload.callers.bpf.on_alloc=bogus", "workload.callers.bpf.on_alloc"),
    ("workload.callers.secretmem.lifetime_s.dist=gamma", "workload.callers.secretmem.lifetime_s.dist"),
    ("workload.callers.bpf.order_mix=[1,0,0,0,0,0,0,0,0,0,0,1]", "workload.callers.bpf.order_mix"),
    ("workload.callers.bpf.order_mix=[0.5,-1]", "workload.callers.bpf.order_mix[1]"),
    ("workload.callers.movable.share=0.9", "workload.callers.*.share"),
    ("machine.holes=[[4,0]]", "machine.holes[0]"),
    ("sample_interval_s=0", "sample_interval_s"),
])
def test_bad_values_name_the_key_and_range(override, key):
    with pytest.raises(ConfigError) as e:
        sim.load_config([override])
    assert key in str(e.value) and "allowed" in str(e.value)


def test_simulate_is_deterministic_and_seeded():
    cfg = sim.load_config(TINY)
    a, b = sim.simulate(cfg), sim.simulate(cfg)
    assert stable(a.counters) == stable(b.counters)
    assert a.timeseries.equals(b.timeseries)
    c = sim.simulate(sim.load_config(TINY + ["seed=1"]))
    assert stable(c.counters) != stable(a.counters)


def test_result_shape_and_time_series():
    r = sim.simulate(sim.load_config(TINY))
    c = r.counters
    for k in ("direct_map_level2_splits", "direct_map_level3_splits", "DirectMap4k", "DirectMap2M",
              "DirectMap1G", "nr_free_pages", "nr_free_order_0", "alloc_fail", "free_2m_blocks"):
        assert k in c and isinstance(c[k], float)
    assert c["direct_map_level2_splits"] > 0  # secretmem / BPF / modules split the map
    assert c["DirectMap4k"] + c["DirectMap2M"] + c["DirectMap1G"] == 256 * 1024
    ts = r.timeseries
    assert ts["t_s"].to_list() == [float(i) for i in range(21)]
    assert ts["direct_map_level2_splits"].is_sorted()  # splits are never undone
    assert ts["direct_map_level2_splits"][-1] == c["direct_map_level2_splits"]
    assert r.config["machine"]["mem_mib"] == 256 and r.events_per_second > 0
    assert r.directmap.size == 512  # 2M regions of the (1G-padded) span
    # pageblock pollution, kept incrementally: a value in every row, the last = the final counter
    for col in ("pageblocks_polluted", "pageblocks_mixed"):
        assert ts[col].null_count() == 0 and ts[col][-1] == c[col]
    assert 0 <= c["pageblocks_mixed"] <= c["pageblocks_polluted"] <= 128 and c["pageblocks_polluted"] > 0  # 128 pageblocks


def test_compiled_equals_pure_python():
    code = ("import json, sim; r = sim.simulate(sim.load_config(%r)); "
            "print(json.dumps({k: v for k, v in r.counters.items() if k != 'events_per_second'}))") % (TINY,)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    pure = json.loads(out.stdout)
    compiled = stable(sim.simulate(sim.load_config(TINY)).counters)
    assert pure == compiled


def test_cli_writes_outputs(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "sim", *TINY, f"hydra.run.dir={out}"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "direct_map_level2_splits" in p.stdout
    for f in ("timeseries.parquet", "directmap.png", "counters.json"):
        assert (out / f).stat().st_size > 0
    assert json.loads((out / "counters.json").read_text())["DirectMap4k"] > 0


def test_cli_rejects_bad_value_before_running(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sim", "machine.mem_mib=1", f"hydra.run.dir={tmp_path}"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode != 0
    assert "machine.mem_mib" in p.stderr and "allowed" in p.stderr
    assert not (tmp_path / "timeseries.parquet").exists()
