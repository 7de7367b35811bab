"""Sweeps end to end: real local Ray, real sqlite MLflow store, the real CLI (`python -m sweeps`).

The module starts one local Ray instance (2 CPUs) after warming numba's on-disk cache in this
process; the sweeps run as subprocesses that attach to it with `ray.address=`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["machine=small", "workload=idle", "workload.duration_s=5", "policy=none"]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ray_address():
    import ray

    import sim

    sim.simulate(sim.load_config(TINY))  # compile (or load) the numba cache once, before any worker
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _args(tmp: Path, address: str | None, *overrides: str) -> list[str]:
    a = [sys.executable, "-m", "sweeps", *overrides,
         f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"tracking.artifact_root={tmp / 'art'}",
         f"sweep.ledger_dir={tmp / 'ledger'}", f"sweep.out_dir={tmp / 'out'}",
         f"hydra.sweep.dir={tmp / 'multirun'}", "sweep.progress=false"]
    if address:
        a.append(f"ray.address={address}")
    return a


def run_cli(tmp: Path, address: str | None, *overrides: str, env=None, timeout=300):
    e = dict(os.environ, **(env or {}))
    e.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(_args(tmp, address, *overrides), cwd=tmp, env=e, capture_output=True, text=True,
                          timeout=timeout)


def runs(tmp: Path, role: str | None = "child", view_all: bool = False):
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    c = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = c.get_experiment_by_name("dmfrag")
    filt = f"tags.`dmfrag.role` = '{role}'" if role else ""
    return c, c.search_runs([exp.experiment_id], filt, max_results=1000,
                            run_view_type=ViewType.ALL if view_all else ViewType.ACTIVE_ONLY)


def ledger(tmp: Path) -> pl.DataFrame:
    files = sorted((tmp / "ledger").glob("*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def test_end_to_end_and_rerun_skips(tmp_path, ray_address):
    p = run_cli(tmp_path, ray_address, *TINY, "seed=0,1,2", "workload.target_utilisation=0.5,0.8")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "6 done, 0 failed, 0 skipped" in p.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in p.stdout
    assert "L2 splits" in p.stdout and "result, mean per policy" in p.stdout  # top rows, the result
    assert max(len(line) for line in p.stdout.splitlines() if "ui --backend-store-uri" not in line) <= 100
    c, children = runs(tmp_path)
    assert len(children) == 6
    assert {r.info.status for r in children} == {"FINISHED"}
    assert len({r.data.tags["dmfrag.config_hash"] for r in children}) == 6
    # named for the swept values only, distinct; swept keys as params and tags under short names
    names = {r.info.run_name for r in children}
    assert names == {f"none tu={u} s{s}" for u in (0.5, 0.8) for s in range(3)}, names
    r = [r for r in children if r.info.run_name == "none tu=0.8 s1"][0]
    assert r.data.params == {"policy": "none", "workload": "idle", "mem_mib": "1024", "duration_s": "5.0",
                             "seed": "1", "target_utilisation": "0.8"}
    assert r.data.tags["target_utilisation"] == "0.8" and r.data.tags["seed"] == "1"
    m = r.data.metrics
    for k in ("0_headline/direct_map_level2_splits", "0_headline/DirectMap4k_kB", "0_headline/alloc_fail",
              "direct_map/DirectMap2M_kB", "order/alloc_fail_order_0", "perf/wall_s", "perf/events_per_second"):
        assert k in m, sorted(m)
    assert "DirectMap4k" not in m and "direct_map/direct_map_level2_splits" not in m  # once, under the headline
    assert m["0_headline/DirectMap4k_kB"] > 0
    hist = c.get_metric_history(r.info.run_id, "ts/DirectMap4k_kB")
    assert len(hist) >= 5 and max(h.step for h in hist) == 5000  # time series, step = simulated ms
    assert not [k for k in m if k.startswith("ts/t_s")]
    assert r.data.tags["dmfrag.policy"] == "none" and r.data.tags["dmfrag.sweep_id"]
    assert {a.path for a in c.list_artifacts(r.info.run_id)} == {"timeseries.parquet", "directmap.png", "config.yaml"}
    cfg = (Path(c.download_artifacts(r.info.run_id, "config.yaml", str(tmp_path))).read_text())
    assert "mem_mib: 1024" in cfg and "target_utilisation: 0.8" in cfg
    _, parents = runs(tmp_path, "parent")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    par = parents[0]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {par.info.run_id}
    arts = {a.path for a in c.list_artifacts(par.info.run_id)}
    assert {"sweep_table.parquet", "sweep_table.html", "summary.png", "sweep_config.yaml"} <= arts
    note = par.data.tags["mlflow.note.content"]
    assert "python -m sweeps" in note and "workload.target_utilisation" in note and "Result" in note
    assert par.data.tags.get("mlflow.source.git.commit", "x")  # set when the project is a git checkout
    assert {h.step for h in c.get_metric_history(par.info.run_id, "runs_done")} == {0}
    assert par.data.metrics["0_headline/none/direct_map_level2_splits"] >= 0
    html = Path(c.download_artifacts(par.info.run_id, "sweep_table.html", str(tmp_path))).read_text()
    assert "none tu=0.5 s2" in html and "direct_map_level2_splits" in html
    table = pl.read_parquet(c.download_artifacts(par.info.run_id, "sweep_table.parquet", str(tmp_path)))
    assert table.height == 6 and set(table["status"]) == {"done"}
    assert {"run", "seed", "workload.target_utilisation", "direct_map_level2_splits"} <= set(table.columns)
    assert ledger(tmp_path).height == 6

    # the same sweep again: everything skipped, nothing recorded twice
    p = run_cli(tmp_path, ray_address, *TINY, "seed=0,1,2", "workload.target_utilisation=0.5,0.8")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 done, 0 failed, 6 skipped" in p.stdout
    assert len(runs(tmp_path)[1]) == 6
    assert len(runs(tmp_path, "parent")[1]) == 1  # the same sweep id reuses its parent run


def test_failing_config_is_recorded_and_others_finish(tmp_path, ray_address):
    p = run_cli(tmp_path, ray_address, *TINY, "seed=0,1,2", "tracking.picture=false",
                env={"DMFRAG_SWEEP_FAIL_IF": "seed=1"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "2 done, 1 failed" in p.stdout
    assert "injected failure" in p.stdout  # the failure summary names the error
    _, children = runs(tmp_path)
    st = sorted((r.data.params["seed"], r.info.status) for r in children)
    assert st == [("0", "FINISHED"), ("1", "FAILED"), ("2", "FINISHED")]
    failed = [r for r in children if r.info.status == "FAILED"][0]
    assert "RuntimeError: injected failure" in failed.data.tags["dmfrag.error"]
    led = ledger(tmp_path)
    assert sorted(led["status"].to_list()) == ["done", "done", "failed"]

    # fixed: a re-run retries only the failed config; its old FAILED run is deleted
    p = run_cli(tmp_path, ray_address, *TINY, "seed=0,1,2", "tracking.picture=false")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 done, 0 failed, 2 skipped" in p.stdout
    _, children = runs(tmp_path)
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 3


@pytest.mark.parametrize("override,key", [("workload.duration_s=-5", "workload.duration_s"),
                                          ("machine.mem_mb=512", "machine.mem_mb"),
                                          ("seed=abc", "seed"),
                                          ("tracking.client_threads=0", "tracking.client_threads"),
                                          ("sweep.chunk_size=-1", "sweep.chunk_size")])
def test_bad_override_fails_before_anything_starts(tmp_path, override, key):
    p = run_cli(tmp_path, None, *TINY, "seed=0,1", override)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert key in out, out
    assert not (tmp_path / "mlflow.db").exists()  # no store opened, no task started
    assert not (tmp_path / "ledger").exists()
    assert "Started a local Ray instance" not in out


def test_resume_after_killed_driver(tmp_path, ray_address):
    n = 40
    ov = ["machine=small", "workload=idle", "workload.duration_s=300", "policy=none", f"seed=range({n})",
          "sweep.chunk_size=1", "sweep.max_in_flight=2", "tracking.picture=false"]
    e = dict(os.environ)
    e.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(_args(tmp_path, ray_address, *ov), cwd=tmp_path, env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    recorded = 0
    while time.time() - t0 < 240:
        recorded = ledger(tmp_path).height if (tmp_path / "ledger").exists() else 0
        if recorded >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= recorded < n, f"killed with {recorded} of {n} runs recorded"
    _, before = runs(tmp_path, role=None)
    assert any(r.info.status == "RUNNING" for r in before)  # the killed driver's parent run

    p = run_cli(tmp_path, ray_address, *ov)
    assert p.returncode == 0, p.stdout + p.stderr
    c, children = runs(tmp_path)
    hashes = [r.data.tags["dmfrag.config_hash"] for r in children]
    assert len(hashes) == n and len(set(hashes)) == n  # every config exactly once
    _, everything = runs(tmp_path, role=None)
    assert not [r for r in everything if r.info.status == "RUNNING"]
    led = ledger(tmp_path)
    assert led["hash"].n_unique() == n and led.height == n  # never recorded twice
    skipped = int(p.stdout.split(" skipped")[0].rsplit(", ", 1)[1])
    assert skipped >= recorded


def test_fast_composition_matches_hydra():
    """The per-job fast path gives exactly the config Hydra composes job by job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import sim
    from sim.paths import conf_dir
    from sweeps.compose import Composer
    from sweeps.hashing import config_hash
    from sweeps.schema import register

    register()
    GlobalHydra.instance().clear()
    jobs = [["machine=small", "workload=mixed", "seed=3", "workload.duration_s=7",
             "workload.callers.modules.order_mix=[0.5,0,0.5]", "machine.pcp=false"],
            ["machine=small", "workload=idle", "seed=4", "workload.callers.movable.lifetime_s.mean=30",
             "workload.callers.movable.order_mix.9=0.05", "policy=unmapped_cache", "policy.max_blocks=16",
             "sweep.chunk_size=4"],
            ["machine=small", "workload=idle", "machine.pte_mapped=[[0,4096]]"]]  # a list: the slow path
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        master = compose("sweeps", overrides=[], return_hydra_config=True)
        comp = Composer(loader, master)
        got = comp.compose_all(jobs)
        assert comp.stats.combos == 3 and comp.stats.slow_jobs == 1
        for j, ovs in zip(got, jobs):
            ref = compose("config", overrides=[o for o in ovs if not o.startswith("sweep.")])
            assert j.hash == config_hash(sim.to_sim_config(ref)), ovs
        assert got[0].params["workload.callers.modules.order_mix"] == str([0.5, 0.0, 0.5])
        with pytest.raises(sim.ConfigError, match="workload.duration_s"):
            comp.compose_all([["machine=small", "workload.duration_s=-1"]])
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("s", ["seed=3", "seed=-3", "a.b=0", "x=007", "x=1.5", "x=.5", "x=5.", "x=1e3", "x=-2.5E-3",
                               "x=true", "x=False", "x=null", "x=NULL", "x=abc", "x=a-b_c", "x=inf", "x=nan",
                               "x=1_000", "x=[1,2]", "x='s'", "policy=unmapped_cache", "x=a b"])
def test_simple_override_parser_agrees_with_hydra(s):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sweeps.compose import SimpleOverride

    ref = OverridesParser.create().parse_override(s)
    fast = SimpleOverride.parse(s)
    if fast is not None:  # when it answers, it answers like Hydra
        assert (fast.key_or_group, fast.value(), type(fast.value())) == \
            (ref.key_or_group, ref.value(), type(ref.value()))


def test_runs_without_ledger_rows_are_discarded_and_redone(tmp_path, ray_address):
    """A driver killed after the store committed a chunk but before its ledger part was written
    leaves runs the ledger does not know: the next attempt deletes them and records each once."""
    import shutil

    ov = [*TINY, "seed=0,1", "tracking.picture=false"]
    assert run_cli(tmp_path, ray_address, *ov).returncode == 0
    shutil.rmtree(tmp_path / "ledger")  # as if killed between the commit and the ledger write
    p = run_cli(tmp_path, ray_address, *ov)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "discarded 2 run(s)" in p.stderr and "2 done, 0 failed, 0 skipped" in p.stdout
    _, children = runs(tmp_path)
    assert len(children) == 2 and len({r.data.tags["dmfrag.config_hash"] for r in children}) == 2
    _, every = runs(tmp_path, view_all=True)
    assert sum(r.info.lifecycle_stage == "deleted" for r in every) == 2


def test_credentials_are_redacted_from_logged_overrides_and_printed_commands():
    from sweeps.tracking import redact, ui_command

    text = redact("tracking.uri=http://admin:s3cret@127.0.0.1:5000 b=postgresql+psycopg2://u:pw@h/db")
    assert "s3cret" not in text and "pw@" not in text and "127.0.0.1:5000" in text
    assert "s3cret" not in ui_command("http://admin:s3cret@127.0.0.1:5000")


def test_bulk_and_client_writers_record_the_same(tmp_path, ray_address):
    """The SQL bulk writer and the MlflowClient (tracking server) writer: same names, params,
    tags, metrics (keys, values, steps) and artifacts for the same sweep."""
    got = {}
    for mode in ("bulk", "client"):
        d = tmp_path / mode
        d.mkdir()
        p = run_cli(d, ray_address, *TINY, "seed=0,1", "policy=none,unmapped_cache", f"tracking.mode={mode}")
        assert p.returncode == 0, p.stdout + p.stderr
        c, children = runs(d)
        out = {}
        for r in children:
            tags = {k: v for k, v in r.data.tags.items()
                    if not k.startswith("mlflow.") and k not in ("dmfrag.sweep_id", "dmfrag.node")}
            hist = {k: sorted((m.step, m.value) for m in c.get_metric_history(r.info.run_id, k))
                    for k in ("ts/DirectMap4k_kB", "0_headline/direct_map_level2_splits")}
            out[r.info.run_name] = (r.data.params, tags, {k: v for k, v in r.data.metrics.items() if "perf/" not in k},
                                    hist, sorted(a.path for a in c.list_artifacts(r.info.run_id)))
        got[mode] = out
    assert sorted(got["bulk"]) == ["none s0", "none s1", "unmapped_cache s0", "unmapped_cache s1"]
    assert got["bulk"] == got["client"]
