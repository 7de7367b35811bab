"""Bad input fails fast: one line naming the key, the value and the allowed range, exit 2,
before any work (python -m sim), including runs whose estimated memory cannot fit."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim
from sim.config import POLICY_KNOBS, ConfigError

ROOT = Path(__file__).resolve().parents[1]


def sim_cli(tmp: Path, *overrides: str, env=None):
    return subprocess.run([sys.executable, "-m", "sim", *overrides, f"hydra.run.dir={tmp / 'out'}"], cwd=tmp,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("overrides,key", [
    (["policy=none", "policy.max_blocks=5"], "policy.max_blocks"),
    (["policy=prog_pack", "policy.release=4k"], "policy.release"),
    (["machine.mem_mib=64"], "machine.mem_mib"),
    (["machine=small", "workload.duration_s=2",
      "++workload.callers={sm: {kind: secretmem, rate_per_s: 1e9, on_alloc: np, on_free: default}}"],
     "workload.callers.sm.rate_per_s"),
    # most live allocations per page; with the next window built next to the loop (2+ CPUs), most
    # events per window
    (["machine.mem_mib=16777216"], ("workload.callers.reclaimable.share", "workload.callers.movable.share")),
])
def test_sim_cli_bad_input_is_one_line_exit_2(tmp_path, overrides, key):
    p = sim_cli(tmp_path, *overrides)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    keys = key if isinstance(key, tuple) else (key,)
    assert len(lines) == 1 and any(lines[0].startswith(f"error: config key '{k}'") for k in keys), p.stderr
    assert "allowed" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "out" / "counters.json").exists()


def test_max_run_memory_names_the_dominant_keys(tmp_path):
    p = sim_cli(tmp_path, "machine=small", "workload.duration_s=60", env={"DMFRAG_MAX_RUN_MEMORY": "100M"})
    assert p.returncode == 2
    assert "DMFRAG_MAX_RUN_MEMORY" in p.stderr and "fits in 100.0 MiB" in p.stderr


def test_memory_estimate_grows_with_rate_duration_and_machine():
    from sim.memory import estimate
    from sim.hydra_conf import to_sim_config

    def est(*ov):
        return estimate(to_sim_config(sim.load_config(list(ov)))).total

    base = est("machine=small", "workload.duration_s=60")
    assert est("machine=default", "workload.duration_s=60") > base
    assert est("machine=small", "workload.duration_s=60", "workload.callers.bpf.rate_per_s=10000") > base
    # the workload is streamed: memory is the live objects plus one window, not the whole run
    hour = est("machine=server64g", "workload=production_busy", "workload.duration_s=3600")
    assert est("machine=server64g", "workload=production_busy", "workload.duration_s=604800") < 1.1 * hour
    # measured (benchmarks/bench_uptime.py): 64 GiB production_busy peaks at 1.03 GB after 600 s,
    # 1.17 GB after 1 h; the estimate is above it, not 2x
    assert 1.17e9 < hour < 2 * 1.17e9


def test_every_policy_declares_its_knobs_and_its_preset_passes():
    from sim.config import POLICIES, PolicyConfig, validate_policy

    assert set(POLICIES) == set(POLICY_KNOBS)
    for name in POLICIES:
        validate_policy(sim.policy_config(name))
        validate_policy(PolicyConfig(name=name, **({"release": "4k"} if name == "grouped_pages" else {})))
    with pytest.raises(ConfigError, match=r"policy.max_blocks.*its knobs: none"):
        sim.policy_config("none", max_blocks=5)
