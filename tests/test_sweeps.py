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
import psutil
import pytest
from mlflow_store import empty_store

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


def _args(tmp: Path, address: str | None, *overrides: str, store: bool = True) -> list[str]:
    """The sweep's command line; `store`: start from an empty store (else the driver creates it)."""
    if store and not (tmp / "mlflow.db").exists():
        empty_store(tmp / "mlflow.db")
    a = [sys.executable, "-m", "sweeps", *overrides,
         f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"tracking.artifact_root={tmp / 'art'}",
         f"sweep.ledger_dir={tmp / 'ledger'}", f"sweep.out_dir={tmp / 'out'}",
         f"hydra.sweep.dir={tmp / 'multirun'}", "sweep.progress=false"]
    if address:
        a.append(f"ray.address={address}")
    return a


def run_cli(tmp: Path, address: str | None, *overrides: str, env=None, timeout=300, store: bool = True):
    e = dict(os.environ, **(env or {}))
    e.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(_args(tmp, address, *overrides, store=store), cwd=tmp, env=e, capture_output=True, text=True,
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
    assert max(len(line) for line in p.stdout.splitlines()
               if "ui --backend-store-uri" not in line and str(tmp_path) not in line
               and str(ROOT) not in line) <= 100  # paths vary (the numba cache's: "model compiled ... in <dir>")
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
    p = run_cli(tmp_path, None, *TINY, "seed=0,1", override, store=False)
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


def test_fresh_ledger_against_populated_store_deletes_and_recomputes_nothing(tmp_path, ray_address):
    """The store, not the ledger, says what is recorded: a fresh ledger (another machine, a
    `ray job submit` working directory, a killed driver between commit and ledger write) skips
    the recorded configs, rebuilds its rows from the store, and deletes nothing."""
    import shutil

    ov = [*TINY, "seed=0,1", "tracking.picture=false"]
    assert run_cli(tmp_path, ray_address, *ov).returncode == 0
    _, first = runs(tmp_path)
    shutil.rmtree(tmp_path / "ledger")
    p = run_cli(tmp_path, ray_address, *ov)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 done, 0 failed, 2 skipped" in p.stdout
    assert "removed" not in p.stderr and "discarded" not in p.stderr
    _, every = runs(tmp_path, view_all=True)
    assert sorted(r.info.run_id for r in every) == sorted(r.info.run_id for r in first)  # nothing deleted
    assert {r.info.status for r in every} == {"FINISHED"}
    led = ledger(tmp_path)  # rebuilt from the store, with the counters for the sweep table
    assert led.height == 2 and set(led["run_id"]) == {r.info.run_id for r in first}
    assert all("direct_map_level2_splits" in m for m in led["metrics"])
    table = pl.read_parquet(tmp_path / "out" / "sweep_table.parquet")
    assert set(table["status"]) == {"done"} and table["direct_map_level2_splits"].null_count() == 0


def _start(tmp: Path, address: str, *overrides: str, ledger_dir: str | None = None):
    e = dict(os.environ)
    e.pop("MLFLOW_TRACKING_URI", None)
    args = _args(tmp, address, *overrides)
    if ledger_dir:
        args.append(f"sweep.ledger_dir={ledger_dir}")
    return subprocess.Popen(args, cwd=tmp, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _exactly_once(tmp: Path, n: int) -> None:
    _, children = runs(tmp)
    hashes = [r.data.tags["dmfrag.config_hash"] for r in children]
    assert len(hashes) == n and len(set(hashes)) == n, sorted(hashes)
    assert {r.info.status for r in children} == {"FINISHED"}
    _, every = runs(tmp, role=None, view_all=True)
    assert not [r for r in every if r.info.status == "RUNNING"]
    assert not [r for r in every if r.info.lifecycle_stage == "deleted" and r.info.status == "FINISHED"]


def test_two_identical_sweeps_at_once_record_each_config_once(tmp_path, ray_address):
    """Same store, separate ledgers (two machines): each config is run and recorded once; the
    sweep that did not run a config waits for the other and reports it skipped."""
    ov = [*TINY, "seed=range(8)", "tracking.picture=false", "sweep.chunk_size=1", "sweep.max_in_flight=1"]
    procs = [_start(tmp_path, ray_address, *ov, ledger_dir=str(tmp_path / f"ledger{i}")) for i in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, o + e
    _exactly_once(tmp_path, 8)
    done = [int(o.split(" done,")[0].rsplit(": ", 1)[1]) for o, _ in outs]
    skipped = [int(o.split(" skipped")[0].rsplit(", ", 1)[1]) for o, _ in outs]
    assert sum(done) == 8 and [d + s for d, s in zip(done, skipped)] == [8, 8], outs
    for i in range(2):  # each ledger holds all 8 configs (its own runs + rows rebuilt from the store)
        led = pl.concat([pl.read_parquet(f) for f in (tmp_path / f"ledger{i}").glob("*/*.parquet")])
        assert led["hash"].n_unique() == 8


def test_overlapping_sweeps_record_shared_configs_once(tmp_path, ray_address):
    a = [*TINY, "seed=range(0,6)", "tracking.picture=false", "sweep.chunk_size=1", "sweep.max_in_flight=1"]
    b = [*TINY, "seed=range(3,9)", "tracking.picture=false", "sweep.chunk_size=1", "sweep.max_in_flight=1"]
    procs = [_start(tmp_path, ray_address, *a), _start(tmp_path, ray_address, *b)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, o + e
    _exactly_once(tmp_path, 9)
    _, parents = runs(tmp_path, "parent")
    assert len(parents) == 2 and {r.info.status for r in parents} == {"FINISHED"}
    for o, _ in outs:
        assert "6 configs" in o


def test_claim_decisions_and_leases():
    """A RUNNING claim whose attempt's lease is gone (driver killed) is removed and redone; a
    live one is waited for; FINISHED runs are never deleted."""
    from sweeps.claims import BUSY, DONE, FREE, StoreRun, classify

    fin = StoreRun("f", "h", "FINISHED", 5)
    live, dead = StoreRun("l", "h", "RUNNING", 1, "a1", "p"), StoreRun("d", "h", "RUNNING", 0, "a2", "p")
    failed = StoreRun("x", "h", "FAILED", 0)
    is_live = lambda r: r.run_id == "l"  # noqa: E731
    assert classify([fin, live, dead], True, is_live).state == DONE
    d = classify([live, dead, failed], True, is_live)
    assert d.state == BUSY and d.run is live and d.dead == [dead]
    d = classify([dead, failed], True, is_live)
    assert d.state == FREE and d.dead == [dead] and d.old_failed == [failed]
    from sweeps.lease import HOST, alive

    assert not alive(f"{HOST} 999999999 {time.time() + 60}")  # no such process here: dead at once
    assert alive(f"{HOST} {os.getpid()} {time.time() + 60}") and not alive(f"{HOST} {os.getpid()} 0")
    assert alive(f"otherhost 1 {time.time() + 60}") and not alive(None)


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
                    if not k.startswith("mlflow.") and k not in ("dmfrag.sweep_id", "dmfrag.attempt", "dmfrag.node")}
            hist = {k: sorted((m.step, m.value) for m in c.get_metric_history(r.info.run_id, k))
                    for k in ("ts/DirectMap4k_kB", "0_headline/direct_map_level2_splits")}
            out[r.info.run_name] = (r.data.params, tags, {k: v for k, v in r.data.metrics.items() if "perf/" not in k},
                                    hist, sorted(a.path for a in c.list_artifacts(r.info.run_id)))
        got[mode] = out
    assert sorted(got["bulk"]) == ["none s0", "none s1", "unmapped_cache s0", "unmapped_cache s1"]
    assert got["bulk"] == got["client"]


def test_bulk_writer_knows_the_mlflow_schema(tmp_path):
    """The bulk writer INSERTs into MLflow's own tables: it must know the store's schema
    revision, and at an unknown one it records through MlflowClient instead (with a warning)."""
    import warnings

    import sweeps.tracking as tr

    t = tr.Tracker(f"sqlite:///{tmp_path / 'm.db'}", "e", (tmp_path / "art").as_uri())
    rev = tr.schema_revision(t.client._tracking_client.store)
    assert rev in tr.BULK_SCHEMA_REVISIONS, (
        f"MLflow's schema is at alembic revision {rev}, which the bulk writer was not checked against: "
        "compare the runs/tags/params/metrics/latest_metrics columns with sweeps/tracking.py RUN_COLS and "
        "_commit_bulk, then add the revision to BULK_SCHEMA_REVISIONS")
    assert t.mode == "bulk"
    saved = set(tr.BULK_SCHEMA_REVISIONS)
    tr.BULK_SCHEMA_REVISIONS.clear()
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t2 = tr.Tracker(f"sqlite:///{tmp_path / 'm.db'}", "e", (tmp_path / "art").as_uri())
        assert t2.mode == "client" and t2.store is None
        assert any("schema revision" in str(x.message) for x in w)
    finally:
        tr.BULK_SCHEMA_REVISIONS.update(saved)


def test_two_drivers_setting_up_one_experiment_at_once(tmp_path, monkeypatch):
    """Two sweeps starting together on a new experiment both find its kind tag missing and
    both set it; on a tracking server with PostgreSQL the second INSERT fails on the key the
    first wrote (seen in CI: UniqueViolation on experiment_tag_pk). The loser goes on; a
    write that fails for another reason still fails."""
    from mlflow import MlflowClient

    import sweeps.tracking as tr

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    real = MlflowClient.set_experiment_tag

    def other_driver_first(self, experiment_id, key, value):
        real(self, experiment_id, key, value)  # the other driver's write ...
        raise RuntimeError("duplicate key value violates unique constraint \"experiment_tag_pk\"")  # ... ours

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", other_driver_first)
    t = tr.Tracker(uri, "e")
    assert t.client.get_experiment(t.experiment_id).tags[tr.T_KIND] == "custom_model_development"

    def refused(self, experiment_id, key, value):
        raise RuntimeError("permission denied")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refused)
    MlflowClient(tracking_uri=uri).create_experiment("f", artifact_location=(tmp_path / "art2").as_uri())
    with pytest.raises(RuntimeError, match="permission denied"):
        tr.Tracker(uri, "f")


def _started(kids, names) -> bool:
    def cmd(k):
        try:
            return " ".join(k.cmdline())
        except psutil.Error:
            return ""
    return any(n in cmd(k) for k in kids for n in names)


@pytest.mark.parametrize("sig,code,when", [(signal.SIGTERM, 143, "running"), (signal.SIGINT, 130, "running"),
                                           (signal.SIGTERM, 143, "ray_starting")])
def test_signal_ends_the_sweep_cleanly(tmp_path, sig, code, when):
    """SIGTERM / SIGINT mid-sweep (200 runs one at a time: still running when the signal comes, on a
    fast machine too), or while ray.init is still starting the local instance (its
    own handlers would exit 15 or abort): in-flight tasks cancelled, this attempt's unfinished
    claims removed, the parent run KILLED, one summary line, exit 143 / 130, and the local Ray
    instance it started gone."""
    ov = ["machine=small", "workload=idle", "workload.duration_s=300", "policy=none", "seed=range(200)",
          "sweep.chunk_size=1", "sweep.max_in_flight=1", "tracking.picture=false", "ray.num_cpus=1"]
    e = dict(os.environ)
    e.pop("MLFLOW_TRACKING_URI", None)
    e.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(_args(tmp_path, None, *ov), cwd=tmp_path, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    names = ("gcs_server",) if when == "ray_starting" else ("ray::run_chunk", "ray::IDLE")
    while time.time() - t0 < 240 and proc.poll() is None:
        if _started(psutil.Process(proc.pid).children(recursive=True), names):
            break
        time.sleep(0.1)
    if when == "running":
        time.sleep(3)
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert proc.poll() is None and kids, "the sweep did not start its Ray instance"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, out + err
    assert "Traceback" not in err and f"interrupted by {sig.name}" in err, err
    _, parents = runs(tmp_path, "parent")
    assert [r.info.status for r in parents] == ["KILLED"]
    _, every = runs(tmp_path, role=None)
    assert not [r for r in every if r.info.status == "RUNNING"]
    _, children = runs(tmp_path)
    assert {r.info.status for r in children} <= {"FINISHED"}
    gone, alive = psutil.wait_procs(kids, timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], [p.cmdline()[:2] for p in alive]


@pytest.mark.parametrize("override,code,needle", [
    ("sweep.out_dir={tmp}/afile/out", 2, "config key 'sweep.out_dir'"),
    ("sweep.ledger_dir={tmp}/afile/ledger", 2, "config key 'sweep.ledger_dir'"),
    ("tracking.uri=http://127.0.0.1:9/", 3, "(tracking.uri) did not answer within 2 s"),
    ("ray.address=127.0.0.1:1", 3, "(ray.address) did not answer within 2 s"),
    ("ray.num_cpus=-1", 2, "config key 'ray.num_cpus' = -1"),
    ("seed=range(0,5,0)", 2, "config key 'seed'"),
    ("sweep.max_run_memory=100M", 2, "fits in 100.0 MiB (sweep.max_run_memory)"),
    ("++workload.callers={sm:{kind:secretmem,rate_per_s:1e9}}", 2, "config key 'workload.callers.sm.rate_per_s'"),
    ("policy.release=4k", 2, "config key 'policy.release'"),
])
def test_bad_service_settings_fail_in_one_line_before_the_store(tmp_path, override, code, needle):
    (tmp_path / "afile").touch()
    e = dict(os.environ)
    e.pop("MLFLOW_TRACKING_URI", None)
    args = _args(tmp_path, None, *TINY, "seed=0,1", "tracking.connect_timeout_s=2", store=False) + [override.replace("{tmp}", str(tmp_path))]
    p = subprocess.run(args, cwd=tmp_path, env=e, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), p.stdout + p.stderr
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert "Started a local Ray instance" not in p.stdout + p.stderr


def test_identical_resolved_configs_run_once(tmp_path, ray_address):
    """policy=none ignores max_blocks: its two jobs are one config (max_blocks at the preset's value)."""
    p = run_cli(tmp_path, ray_address, *TINY, "policy=none,unmapped_cache", "policy.max_blocks=16,64",
                "tracking.picture=false")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 configs: 3 done, 0 failed, 1 skipped" in p.stdout
    _, children = runs(tmp_path)
    # params: the swept keys under their short names (sweeps/naming.py)
    assert sorted((r.data.params["policy"], r.data.params["max_blocks"]) for r in children) == \
        [("none", "0"), ("unmapped_cache", "16"), ("unmapped_cache", "64")]
