"""One sweep, end to end: compose + validate every job, open the MLflow store and the ledger,
skip what is recorded, run the rest on Ray while recording finished chunks, aggregate."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

from . import claims as claims_mod
from . import preflight, signals
from .compose import ComposeStats, Composer
from .lease import Attempt
from .ledger import DONE, FAILED, Ledger
from .schema import Runtime

log = logging.getLogger(__name__)


@dataclass
class Summary:
    sweep_id: str = ""
    jobs: list = field(default_factory=list)
    job_status: list = field(default_factory=list)  # per job: done / failed / skipped / duplicate
    done: int = 0
    failed: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    tracking_uri: str = ""
    parent_run_id: str = ""
    experiment_id: str = ""
    table_path: Optional[Path] = None
    failures: list = field(default_factory=list)  # (overrides, error first line)
    compose: ComposeStats = field(default_factory=ComposeStats)
    record_s: float = 0.0  # driver time recording finished chunks (MLflow + ledger)
    mlflow_s: float = 0.0  # of which in the MLflow store
    exec_stats: Any = None


LAST: Optional[Summary] = None


def _absolute_sqlite(uri: str) -> str:
    """sqlite:///relative.db -> sqlite:////abs/relative.db (the driver's directory, once)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and uri[len(prefix):] != ":memory:":
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def _store_key(uri: str, experiment: str) -> str:
    return f"{experiment}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def git_commit() -> str:
    """The project's git commit (with `-dirty` when the tree has changes), or '' outside git."""
    import subprocess

    from .paths import project_root

    try:
        root = str(project_root())
        rev = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode:
            return ""
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def command_line() -> str:
    from .tracking import redact

    args = [a for a in sys.argv[1:] if a not in ("--multirun", "-m")]
    return redact("python -m sweeps " + " ".join(args))


def describe(rt, jobs, names, commit: str) -> str:
    """The parent run's description (mlflow.note.content, markdown)."""
    sw = ", ".join(f"`{k}` ({names.short[k]})" for k in names.swept) or "nothing (one config)"
    return (f"**Sweep `{rt.sweep.name}`**: {len(jobs)} runs.\n\n"
            f"Command: `{command_line()}`\n\nSwept: {sw}\n\nGit commit: `{commit or 'unknown'}`\n\n"
            "Artifacts: `sweep_table.html` (the result and one row per run), `summary.png`, "
            "`sweep_table.parquet`, `sweep_config.yaml`.")


def run_sweep(config_loader, master_config, job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0,
              out=sys.stdout) -> Summary:
    global LAST
    from tqdm import tqdm

    from . import aggregate
    from .executor import execute, start_ray
    from .hashing import sweep_id as make_sweep_id
    from .paths import default_artifact_root, default_checkpoint_dir, default_ledger_dir, default_tracking_uri
    from .tasks import FAIL_ENV
    from .tracking import Tracker, redact

    t0 = time.perf_counter()
    rt = Runtime.from_config(master_config)
    # 1. every job composed and validated before anything starts (errors name key and job)
    composer = Composer(config_loader, master_config)
    jobs = composer.compose_all(job_overrides, initial_job_idx)
    S = Summary(jobs=jobs, compose=composer.stats)
    S.sweep_id = make_sweep_id(j.hash for j in jobs)
    if rt.sweep.dry_run:
        print(f"dry run: {len(jobs)} jobs composed and validated ({composer.stats.combos} Hydra compositions, "
              f"{composer.stats.per_job_ms():.2f} ms/job); sweep id {S.sweep_id}", file=out)
        S.job_status = ["dry_run"] * len(jobs)
        LAST = S
        return S
    # 2. each run's memory (estimated from its config) must fit; what must be writable, checked
    #    before the store is touched
    _check_memory(jobs, rt)
    out_dir = Path(rt.sweep.out_dir or (master_config.hydra.sweep.dir if "hydra" in master_config
                                        else "multirun/sweep"))
    ledger_root = Path(rt.sweep.ledger_dir or default_ledger_dir())
    preflight.writable_dir("sweep.out_dir", out_dir)
    preflight.writable_dir("sweep.ledger_dir", ledger_root)
    uri = _absolute_sqlite(rt.tracking.uri or default_tracking_uri())
    S.tracking_uri = uri
    preflight.check_tracking(uri, rt.tracking.connect_timeout_s)
    preflight.check_ray(rt.ray, rt.tracking.connect_timeout_s)

    # 3. the MLflow store and experiment, created once by the driver before any worker starts
    default_store = not rt.tracking.uri and not os.environ.get("MLFLOW_TRACKING_URI")
    art_root = rt.tracking.artifact_root or (default_artifact_root() if default_store else None)
    if art_root and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", art_root):  # a relative path, not a URI
        art_root = str(Path(art_root).resolve())
    tracker = Tracker(uri, rt.tracking.experiment, art_root, rt.tracking.mode, rt.tracking.client_threads)
    ledger = Ledger(ledger_root, _store_key(uri, rt.tracking.experiment))
    ledger.compact()

    status: dict[int, str] = {}
    unique, seen = [], set()
    for j in jobs:  # identical resolved configs run once
        if j.hash in seen:
            status[j.idx] = "duplicate"
        else:
            unique.append(j)
            seen.add(j.hash)

    tracker.set_sweep(jobs)
    commit = git_commit()
    note = describe(rt, jobs, tracker.names, commit)[:7900]
    overrides_str = " | ".join(" ".join(o) for o in job_overrides[:3]) + (" | ..." if len(job_overrides) > 3 else "")
    task_ovs = list(master_config.hydra.overrides.task) if "hydra" in master_config else []
    parent = tracker.start_parent(S.sweep_id, rt.sweep.name, {
        "sweep.name": rt.sweep.name, "sweep.jobs": len(jobs), "sweep.overrides": redact(" ".join(task_ovs)) or "(none)",
        "sweep.sweeper_params": str(OmegaConf.to_container(master_config.hydra.sweeper.params))
        if "hydra" in master_config and master_config.hydra.sweeper.get("params") else "(none)",
        "sweep.first_jobs": overrides_str, "sweep.swept": " ".join(tracker.names.swept) or "(none)"},
        tags={"mlflow.source.git.commit": commit, "mlflow.note.content": note} if commit
        else {"mlflow.note.content": note})
    S.parent_run_id = parent
    S.experiment_id = tracker.experiment_id
    attempt = Attempt(tracker.client.set_tag, tracker.client.delete_tag, parent, rt.sweep.lease_s).start()
    tracker.attempt_id = attempt.id

    # 4. claim in the store what nobody has recorded or is running, run it, record it; wait for
    #    configs another live sweep is running (and take over those its driver left unfinished)
    S.skipped = len(jobs) - len(unique)
    bar = tqdm(total=len(unique), unit="run", desc=f"sweep {rt.sweep.name}", file=sys.stderr,
               disable=not rt.sweep.progress, dynamic_ncols=True)
    bar.set_postfix(done=0, failed=0, skipped=S.skipped)
    opts = {"checkpoint_dir": str(rt.sweep.checkpoint_dir or default_checkpoint_dir()),
            "timeseries_steps": rt.tracking.timeseries_steps, "timeseries_metrics": list(rt.tracking.timeseries_metrics),
            "picture": rt.tracking.picture,
            "timeseries_artifact": rt.tracking.timeseries_artifact, "fail_if": os.environ.get(FAIL_ENV)}
    pending = {j.hash: j for j in unique}
    claims: dict[str, str] = {}
    by_status: dict[str, str] = {}  # hash -> done / failed (by this attempt) / skipped

    def on_chunk(chunk, results):
        tr = time.perf_counter()
        by_hash = {j.hash: j for j in chunk}
        pairs = [(by_hash[r["hash"]], r) for r in results]
        tm = time.perf_counter()
        run_ids = tracker.record(parent, S.sweep_id, pairs, claims)
        S.mlflow_s += time.perf_counter() - tm
        rows = []
        for (job, r), rid in zip(pairs, run_ids):
            claims.pop(job.hash, None)
            if rid is None:  # our claim was taken over: the config stays pending
                continue
            pending.pop(job.hash, None)
            ok = r["ok"]
            by_status[job.hash] = DONE if ok else FAILED
            rows.append({"hash": job.hash, "status": DONE if ok else FAILED, "error": r.get("error") or "",
                         "run_id": rid, "sweep_id": S.sweep_id, "params": job.params,
                         "metrics": r.get("counters", {}), "wall_s": float(r.get("wall_s", 0.0))})
            if ok:
                S.done += 1
            else:
                S.failed += 1
                S.failures.append((" ".join(job.overrides), (r.get("error") or "").split("\n")[0]))
        ledger.append(rows)  # a cache of the store: written after the store commit
        S.record_s += time.perf_counter() - tr
        bar.update(len(results))
        bar.set_postfix(done=S.done, failed=S.failed, skipped=S.skipped)

    started = False
    outcome = "failed"
    stop = signals.install()
    try:
        waiting_said = False
        while pending:
            stop.check()
            won, decisions, reaped = tracker.claim(parent, S.sweep_id, attempt.id, list(pending.values()),
                                                   rt.sweep.retry_failed, rt.sweep.claim_settle_s)
            if reaped:
                print(f"removed {reaped} unfinished run(s) left by interrupted attempts", file=sys.stderr)
            for h, d in decisions.items():
                if h not in won and d.state in (claims_mod.DONE, claims_mod.FAILED_STATE):
                    pending.pop(h, None)
                    by_status[h] = "skipped"
                    S.skipped += 1
                    bar.update(1)
            if won:
                claims.update(won)
                if not started:
                    if not (rt.ray.address or os.environ.get("RAY_ADDRESS")):
                        from sim.jitcache import expected_compile_s, needs_compile

                        if needs_compile():
                            bar.write(f"compiling the model for this machine, once: about {expected_compile_s()} s "
                                      "(numba; later sweeps load it from the cache)", file=sys.stderr)
                    started = start_ray(rt.ray)
                    stop.reinstall()  # ray.init installs its own handlers
                S.exec_stats = execute([pending[h] for h in won], rt.ray, opts, on_chunk, rt.sweep.chunk_size,
                                       rt.sweep.max_in_flight, check=stop.check)
                bar.set_postfix(done=S.done, failed=S.failed, skipped=S.skipped)
            elif pending:
                if not waiting_said:
                    print(f"waiting for {len(pending)} config(s) another sweep is running", file=sys.stderr)
                    waiting_said = True
                time.sleep(rt.sweep.wait_poll_s)
            stop.check()
        outcome = "ok"
    except signals.Interrupted as e:
        outcome = e.signame
        raise
    finally:
        stop.quiet()
        bar.close()
        if started:
            import ray

            ray.shutdown()
        if claims:  # claimed and not recorded (interrupted): this attempt's own unfinished runs
            try:
                tracker.discard(list(claims.values()))
            except Exception as e:  # the store is down: the next attempt removes them (dead lease)
                print(f"could not remove {len(claims)} unfinished claim(s): {str(e).splitlines()[0][:200]}",
                      file=sys.stderr)
        attempt.stop()
        recorded = _sync_ledger(tracker, ledger, unique)
        for j in jobs:
            if j.idx not in status:
                status[j.idx] = by_status.get(j.hash, "pending")
        S.job_status = [status[j.idx] for j in jobs]

        # 5. aggregate: the sweep table (parquet) and plots, logged on the parent run
        out_dir.mkdir(parents=True, exist_ok=True)
        df = aggregate.sweep_table(jobs, recorded, tracker.names)
        files = []
        result = aggregate.result_lines(df, width=100)
        if not df.is_empty():
            S.table_path = out_dir / "sweep_table.parquet"
            df.write_parquet(S.table_path)
            files.append(S.table_path)
            html = out_dir / "sweep_table.html"
            html.write_text(aggregate.html_table(df, jobs, f"sweep {rt.sweep.name} ({S.sweep_id[:8]})",
                                                 command_line()))
            files.append(html)
            files += aggregate.plot(df, jobs, out_dir, rt.sweep.plot_x)
        cfg_path = out_dir / "sweep_config.yaml"
        cfg_path.write_text(OmegaConf.to_yaml({k: master_config[k] for k in master_config if k != "hydra"}))
        files.append(cfg_path)
        n_failed_total = int((df["status"] == FAILED).sum()) if "status" in df.columns else 0
        pm = aggregate.parent_metrics(df)  # the result first, then the bookkeeping
        pm.update({"runs": len(jobs), "runs_done": S.done, "runs_failed": S.failed, "runs_skipped": S.skipped,
                   "runs_failed_total": n_failed_total})
        if result:  # the result first: the UI folds a long description after a few lines
            note = "**Result** (mean per policy):\n\n```\n" + "\n".join(result) + "\n```\n\n" + note
        tracker.finish_parent(parent, files, pm, failed=S.failed > 0 or outcome != "ok", note=note)
        if outcome in ("SIGTERM", "SIGINT"):
            tracker.client.set_terminated(parent, "KILLED")
        S.wall_s = time.perf_counter() - t0
        LAST = S
        if outcome == "ok":
            _report(S, df, jobs, rt, out)
        else:
            print(f"sweep {rt.sweep.name} ({S.sweep_id}) {'interrupted by ' + outcome if outcome != 'failed' else 'failed'}"
                  f": {S.done} done, {S.failed} failed, {S.skipped} skipped, {len(pending)} not run; "
                  f"parent run {parent} {'KILLED' if outcome != 'failed' else 'FAILED'}", file=sys.stderr)
        stop.restore()
    return S


def _check_memory(jobs, rt) -> None:
    from sim import memory

    limits = []
    if rt.sweep.max_run_memory:
        limits.append((memory.parse_bytes(rt.sweep.max_run_memory), "sweep.max_run_memory"))
    if not (rt.ray.address or os.environ.get("RAY_ADDRESS")):  # a local Ray: this node runs them
        limits.append((memory.node_memory(), "this node's memory"))
    ests = {}
    for j in jobs:
        if j.hash not in ests:
            ests[j.hash] = memory.estimate(j.sc).total
        j.mem = ests[j.hash]
    for limit, what in limits:
        for j in jobs:
            if j.mem > limit:
                from sim.config import ConfigError

                try:
                    memory.check(j.sc, limit, what)
                except ConfigError as e:
                    raise ConfigError(e.key, e.value, f"{e.allowed} [job #{j.idx}: {' '.join(j.overrides)}]") from None


def _sync_ledger(tracker, ledger: Ledger, jobs) -> dict[str, dict]:
    """The ledger is a cache of the store: rows for runs the store has recorded and the ledger
    lacks (recorded by another sweep or driver) are rebuilt from the store; rows whose run the
    store does not hold are ignored. Returns hash -> row for the recorded configs of `jobs`."""
    hashes = {j.hash for j in jobs}
    store = {}
    for h, runs in tracker.children(hashes).items():
        fin = sorted((r for r in runs if r.status == "FINISHED"), key=lambda r: (r.start_time, r.run_id))
        fail = sorted((r for r in runs if r.status == "FAILED"), key=lambda r: (r.start_time, r.run_id))
        if fin or fail:
            store[h] = fin[0] if fin else fail[-1]
    cached = ledger.latest()
    missing = [r for h, r in store.items() if cached.get(h, {}).get("run_id") != r.run_id]
    if missing:
        res = tracker.results([r.run_id for r in missing])
        params = {j.hash: j.params for j in jobs}
        ledger.append([{"hash": r.hash, "status": DONE if r.status == "FINISHED" else FAILED,
                        "error": res[r.run_id][1], "run_id": r.run_id, "sweep_id": "",
                        "params": params.get(r.hash, {}), "metrics": res[r.run_id][0], "wall_s": 0.0}
                       for r in missing])
        cached = ledger.latest()
    return {h: cached[h] for h, r in store.items() if h in cached and cached[h]["run_id"] == r.run_id}


def _report(S: Summary, df, jobs, rt, out) -> None:
    import polars as pl

    from . import aggregate
    from .tracking import ui_command

    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"\nsweep {rt.sweep.name} ({S.sweep_id}): {len(jobs)} configs: {S.done} done, {S.failed} failed, "
      f"{S.skipped} skipped (already recorded) in {S.wall_s:.1f} s")
    st = S.compose
    p(f"composed {st.jobs} jobs in {st.total_s * 1e3:.0f} ms ({st.combos} Hydra compositions, "
      f"{st.per_job_ms():.2f} ms/job)")
    if S.table_path:
        p(f"sweep table: {S.table_path}")
    p(f"MLflow: experiment '{rt.tracking.experiment}' (id {S.experiment_id}), parent run {S.parent_run_id}")
    if S.tracking_uri.startswith(("http://", "https://")):
        p(f"  {ui_command(S.tracking_uri)}")
    else:
        p("  browse: `make ui` (the project's store) or")
        p(f"  {ui_command(S.tracking_uri)}")
        p(f"  then http://127.0.0.1:5000/#/experiments/{S.experiment_id}?workflowType=machine_learning")
    if not df.is_empty():
        top = aggregate.top_rows(df, jobs, rt.sweep.top, rt.sweep.sort_by)
        first = [c for c in top.columns if c not in aggregate.KEY_METRICS]
        if "status" in first and (top["status"] == "done").all():
            first.remove("status")
        p(f"\ntop {top.height} of {df.height} runs by {rt.sweep.sort_by}:")
        for line in aggregate.fixed_table(top.with_columns(pl.col(first).cast(pl.Utf8)), first, 100):
            p(line)
        result = aggregate.result_lines(df, width=100)
        if result:
            p("\nresult, mean per policy (L2/L3 = direct_map_level2/3_splits, 4k MiB = DirectMap4k):")
            for line in result:
                p(line)
    if S.failures:
        p(f"\n{S.failed} run(s) FAILED:")
        for ov, err in S.failures[:20]:
            p(f"  [{ov}] {err}")
        if len(S.failures) > 20:
            p(f"  ... and {len(S.failures) - 20} more (see the ledger / MLflow tag dmfrag.error)")
