"""MLflow recording: one parent run per sweep, one child run per configuration.

Child runs: named for their swept values (`unmapped_cache mb=64 s0`, sweeps/naming.py); params =
what the run is (policy, workload, mem_mib, duration_s, seed) and the swept keys under short
names, which are tags too; metrics = the headline first, then every counter under its group
(sweeps/metric_names.py), the time series as steps (`ts/<name>`, step = simulated ms); artifacts =
the full config (`config.yaml`), the time series parquet and the direct-map picture; tags =
config hash, sweep id, policy, parent run. The parent run: the sweep table (parquet and HTML),
the summary figure, a description (`mlflow.note.content`) and the git commit; metrics at step 0.

Two writers, same result in the store:
* `bulk` (SQL stores: sqlite, postgresql, mysql, mssql): each finished chunk of runs is inserted
  in ONE transaction with MLflow's own ORM tables (runs, tags, params, metrics, latest_metrics),
  runs created directly in their final state FINISHED / FAILED — a killed driver cannot leave a
  RUNNING child. The per-run MlflowClient path costs ~0.5 s per run on sqlite. A tracking
  server's PostgreSQL can be written this way too (tracking.uri=postgresql://...).
* `client` (tracking servers, http[s]://): per run MlflowClient.create_run (with the tags),
  log_batch (packed to the REST limits: 100 params, 1000 entities per call), artifacts,
  set_terminated; `tracking.client_threads` runs of a finished chunk at once.
"""
from __future__ import annotations

import math
import numbers
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote, urlparse

MAX_PARAM_VALUE = 6000
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

T_KIND = "mlflow.experimentKind"
T_ROLE, T_HASH, T_SWEEP, T_POLICY, T_PARENT = ("dmfrag.role", "dmfrag.config_hash", "dmfrag.sweep_id",
                                              "dmfrag.policy", "mlflow.parentRunId")
from .lease import LEASE_PREFIX, T_ATTEMPT  # noqa: E402


def _sanitize(v: float) -> tuple[bool, float]:
    if math.isnan(v):
        return True, 0.0
    if math.isinf(v):
        return False, 1.7976931348623157e308 if v > 0 else -1.7976931348623157e308
    return False, float(v)


def _csv_field(v: Any) -> str:
    """One field of PostgreSQL's COPY ... (FORMAT csv): None is a bare empty field (NULL),
    strings are quoted (so "" stays an empty string), numbers and booleans bare."""
    if v is None:
        return ""
    if isinstance(v, str):
        return '"' + v.replace('"', '""') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    return repr(float(v))


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= MAX_PARAM_VALUE else s[: MAX_PARAM_VALUE - 3] + "..."


def _file_path(uri: str) -> Optional[Path]:
    p = urlparse(uri)
    if p.scheme == "file":
        return Path(unquote(p.path))
    if p.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


RUN_COLS = ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status", "start_time",
            "end_time", "deleted_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id")


def redact(text: str) -> str:
    """Drop credentials (scheme://user:password@host) from anything logged or printed."""
    import re

    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)


def ui_command(uri: str) -> str:
    uri = redact(uri)
    if uri.split(":", 1)[0].split("+")[0] in SQL_SCHEMES:
        return f"mlflow ui --backend-store-uri {uri}"
    return f"open {uri} in a browser (a tracking server)"


# Alembic revisions of MLflow's SQL schema that the bulk writer (which INSERTs into runs, tags,
# params, metrics and latest_metrics by column name) was checked against. A store at another
# revision is written through MlflowClient; tests/test_sweeps.py fails when the installed MLflow
# creates a revision not listed here.
BULK_SCHEMA_REVISIONS = {"dc11669786a5"}  # mlflow 3.17.2


def schema_revision(store) -> str:
    from sqlalchemy import text

    with store.ManagedSessionMaker() as s:
        return str(s.execute(text("SELECT version_num FROM alembic_version")).scalar())


class _init_lock:
    """An exclusive flock next to a sqlite store while MLflow creates or migrates it."""

    def __init__(self, uri: str):
        self.path = None
        if uri.startswith("sqlite:///") and uri[len("sqlite:///"):] not in ("", ":memory:"):
            db = Path(uri[len("sqlite:///"):])
            self.path = db.with_name("." + db.name + ".init-lock")
        self.fd = None

    def __enter__(self):
        if self.path is not None:
            import fcntl

            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock


def _remove_dirs(dirs) -> None:
    import shutil

    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _unless_done(write: Callable[[], object], done: Callable[[], bool]) -> None:
    """write(); if it fails, it is fine when done() (another driver did the same write)."""
    try:
        write()
    except Exception:
        if not done():
            raise


class Tracker:
    def __init__(self, uri: str, experiment: str, artifact_root: Optional[str] = None, mode: str = "auto",
                 threads: int = 4):
        from mlflow import MlflowClient

        self.uri = uri
        with _init_lock(uri):  # two sweeps creating one sqlite store at once race in MLflow's migrations
            self.client = MlflowClient(tracking_uri=uri)  # a sqlite store creates its database here
            exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                self.client.create_experiment(experiment, artifact_location=artifact_root)
            except Exception:  # created concurrently by another driver
                pass
            exp = self.client.get_experiment_by_name(experiment)
        # Two drivers starting at once both see what is missing and both set it; a tracking
        # server on PostgreSQL INSERTs an experiment tag, so the second fails on the key it
        # would have written anyway: fine when the other driver's write is there.
        if exp.lifecycle_stage != "active":
            _unless_done(lambda: self.client.restore_experiment(exp.experiment_id),
                         lambda: self.client.get_experiment(exp.experiment_id).lifecycle_stage == "active")
        if exp.tags.get(T_KIND) != "custom_model_development":
            # the UI opens an experiment on its runs table, not on the GenAI (traces) overview
            _unless_done(lambda: self.client.set_experiment_tag(exp.experiment_id, T_KIND, "custom_model_development"),
                         lambda: self.client.get_experiment(exp.experiment_id).tags.get(T_KIND)
                         == "custom_model_development")
        self.experiment_id = exp.experiment_id
        self.artifact_location = exp.artifact_location
        scheme = uri.split(":", 1)[0].split("+")[0]
        self.artifact_client = self.client
        if self.artifact_location.startswith("mlflow-artifacts:") and scheme not in ("http", "https"):
            # the store is written directly (e.g. a tracking server's PostgreSQL), the artifacts
            # go through that server's artifact proxy
            server = os.environ.get("MLFLOW_TRACKING_URI", "")
            if not server.startswith(("http://", "https://")):
                raise ValueError(f"experiment {experiment!r} keeps its artifacts at {self.artifact_location}, which "
                                 "only a tracking server serves: set MLFLOW_TRACKING_URI=http(s)://<that server>")
            self.artifact_client = MlflowClient(tracking_uri=server)
        if mode == "auto":
            mode = "bulk" if scheme in SQL_SCHEMES else "client"
        if mode not in ("bulk", "client"):
            raise ValueError(f"tracking.mode must be auto, bulk or client, not {mode!r}")
        self.store = None
        if mode == "bulk":
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = self.client._tracking_client.store
            if not isinstance(store, SqlAlchemyStore):
                raise ValueError(f"tracking.mode=bulk needs a SQL store, not {uri}")
            rev = schema_revision(store)
            if rev in BULK_SCHEMA_REVISIONS:
                self.store = store
            else:  # never write tables whose layout the bulk writer was not checked against
                import warnings

                warnings.warn(f"MLflow schema revision {rev} of {redact(uri)} is not one the bulk writer knows "
                              f"({', '.join(sorted(BULK_SCHEMA_REVISIONS))}): recording through MlflowClient "
                              "(slower)", stacklevel=2)
                mode = "client"
        self.mode = mode
        self.threads = threads
        if mode == "client":
            # set_terminated would fetch the run again (get_run) to print its URL: one more request
            # and two lines of output per run
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            if threads > 1:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dmfrag-mlflow")
        self.names = None  # naming.RunNames of the sweep being recorded (set_sweep)
        self.attempt_id = ""  # set by the sweep: kept as a tag on the runs it claimed and recorded
        self.user = os.environ.get("USER") or os.environ.get("LOGNAME") or "dmfrag"

    # -- the store as the source of truth (sweeps/claims.py) --------------------------------------

    def children(self, hashes: Optional[set] = None) -> dict[str, list]:
        """Active child runs of this experiment by config hash: hash -> [StoreRun]."""
        from .claims import StoreRun

        out: dict[str, list] = {}
        if self.store is not None:
            with self.store.ManagedSessionMaker() as s:
                for r in self._sql_children(s, hashes):
                    out.setdefault(r.hash, []).append(r)
            return out
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{T_ROLE}` = 'child'",
                                           max_results=1000, page_token=token)
            for r in page:
                h = r.data.tags.get(T_HASH, "")
                if hashes is None or h in hashes:
                    out.setdefault(h, []).append(StoreRun(r.info.run_id, h, r.info.status, r.info.start_time or 0,
                                                          r.data.tags.get(T_ATTEMPT, ""), r.data.tags.get(T_PARENT, "")))
            token = page.token
            if not token:
                return out

    def children_by_hash(self) -> dict[str, list[tuple[str, str]]]:
        """Active child runs of this experiment: config hash -> [(run_id, status)]."""
        return {h: [(r.run_id, r.status) for r in rs] for h, rs in self.children().items()}

    def _sql_children(self, s, hashes: Optional[set]) -> list:
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
        from sqlalchemy import and_
        from sqlalchemy.orm import aliased

        from .claims import StoreRun

        ta, tp = aliased(SqlTag), aliased(SqlTag)
        base = (s.query(SqlTag.value, SqlRun.run_uuid, SqlRun.status, SqlRun.start_time, ta.value, tp.value)
                .join(SqlRun, SqlRun.run_uuid == SqlTag.run_uuid)
                .outerjoin(ta, and_(ta.run_uuid == SqlRun.run_uuid, ta.key == T_ATTEMPT))
                .outerjoin(tp, and_(tp.run_uuid == SqlRun.run_uuid, tp.key == T_PARENT))
                .filter(SqlTag.key == T_HASH, SqlRun.experiment_id == int(self.experiment_id),
                        SqlRun.lifecycle_stage == "active"))
        rows = []
        if hashes is None:
            rows = base.all()
        else:
            hl = sorted(hashes)
            for i in range(0, len(hl), 500):
                rows += base.filter(SqlTag.value.in_(hl[i:i + 500])).all()
        return [StoreRun(rid, h, st, int(t or 0), a or "", p or "") for h, rid, st, t, a, p in rows]

    def leases(self, parent_ids: Iterable[str], session=None) -> dict[tuple[str, str], str]:
        """(parent run, attempt id) -> lease value, for the attempts that claimed runs."""
        pids = sorted({p for p in parent_ids if p})
        out: dict[tuple[str, str], str] = {}
        if not pids:
            return out
        if self.store is not None:
            from mlflow.store.tracking.dbmodels.models import SqlTag

            def q(s):
                for i in range(0, len(pids), 500):
                    for rid, k, v in (s.query(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
                                      .filter(SqlTag.run_uuid.in_(pids[i:i + 500]),
                                              SqlTag.key.like(LEASE_PREFIX + "%")).all()):
                        out[(rid, k[len(LEASE_PREFIX):])] = v
            if session is not None:
                q(session)
            else:
                with self.store.ManagedSessionMaker() as s:
                    q(s)
            return out
        for p in pids:
            try:
                tags = self.client.get_run(p).data.tags
            except Exception:  # the parent was deleted: its claims are dead
                continue
            out.update({(p, k[len(LEASE_PREFIX):]): v for k, v in tags.items() if k.startswith(LEASE_PREFIX)})
        return out

    def liveness(self, runs: Iterable, my_attempt: str, session=None):
        """A predicate StoreRun -> live claim, from the leases of the attempts that made them."""
        from .lease import alive

        runs = [r for r in runs if r.status in ("RUNNING", "SCHEDULED")]
        lv = self.leases((r.parent for r in runs if r.attempt and r.attempt != my_attempt), session)
        now = time.time()
        return lambda r: bool(r.attempt) and (r.attempt == my_attempt or alive(lv.get((r.parent, r.attempt)), now))

    def _claim_tags(self, parent_id, sweep_id, job, attempt) -> dict[str, str]:
        return {T_ROLE: "child", T_HASH: job.hash, T_SWEEP: sweep_id, T_POLICY: job.sc.policy.name,
                T_PARENT: parent_id, T_ATTEMPT: attempt, "mlflow.runName": self.run_name(job), "mlflow.user": self.user}

    def claim(self, parent_id: str, sweep_id: str, attempt: str, jobs: list, retry_failed: bool,
              settle_s: float = 2.0):
        """Claim configs for this attempt. Returns (won: hash -> claim run id, decisions: hash ->
        claims.Decision as seen by the claim, reaped: number of dead claims removed)."""
        if not jobs:
            return {}, {}, 0
        if self.store is not None:
            return self._claim_sql(parent_id, sweep_id, attempt, jobs, retry_failed)
        return self._claim_http(parent_id, sweep_id, attempt, jobs, retry_failed, settle_s)

    def _lock_experiment(self, s) -> None:
        """Serialise claims and recordings of concurrent sweeps on this experiment: a write to its
        row takes the row lock (PostgreSQL, MySQL) or the database's write lock (sqlite) until commit."""
        from mlflow.store.tracking.dbmodels.models import SqlExperiment

        s.query(SqlExperiment).filter(SqlExperiment.experiment_id == int(self.experiment_id)).update(
            {SqlExperiment.lifecycle_stage: SqlExperiment.lifecycle_stage}, synchronize_session=False)

    def _sql_delete_runs(self, s, run_ids: list[str], kill: bool) -> None:
        from mlflow.store.tracking.dbmodels.models import SqlRun

        now = int(time.time() * 1000)
        for i in range(0, len(run_ids), 500):
            ids = run_ids[i:i + 500]
            if kill:
                s.query(SqlRun).filter(SqlRun.run_uuid.in_(ids), SqlRun.status.in_(("RUNNING", "SCHEDULED"))).update(
                    {SqlRun.status: "KILLED", SqlRun.end_time: now}, synchronize_session=False)
            s.query(SqlRun).filter(SqlRun.run_uuid.in_(ids), SqlRun.status != "FINISHED").update(
                {SqlRun.lifecycle_stage: "deleted", SqlRun.deleted_time: now}, synchronize_session=False)

    def _claim_sql(self, parent_id, sweep_id, attempt, jobs, retry_failed):
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

        from .claims import FREE, classify

        now = int(time.time() * 1000)
        won, decisions, reaped = {}, {}, 0
        eid = int(self.experiment_id)
        with self.store.ManagedSessionMaker(read_only=False) as s:
            self._lock_experiment(s)
            by_hash: dict[str, list] = {}
            for r in self._sql_children(s, {j.hash for j in jobs}):
                by_hash.setdefault(r.hash, []).append(r)
            is_live = self.liveness([r for rs in by_hash.values() for r in rs], attempt, s)
            runs, tags, dead, old = [], [], [], []
            for j in jobs:
                if j.hash in decisions:
                    continue
                d = classify(by_hash.get(j.hash, []), retry_failed, is_live)
                decisions[j.hash] = d
                dead += [r.run_id for r in d.dead]
                if d.state != FREE:
                    continue
                old += [r.run_id for r in d.old_failed]
                rid = uuid.uuid4().hex
                won[j.hash] = rid
                t = self._claim_tags(parent_id, sweep_id, j, attempt)
                runs.append((rid, t["mlflow.runName"], "LOCAL", "", "", self.user, "RUNNING", now, None, None, "",
                             "active", self._artifact_uri(rid), eid))
                tags += [(k, v, rid) for k, v in t.items()]
            if dead:
                self._sql_delete_runs(s, dead, kill=True)
                reaped = len(dead)
            if old:
                self._sql_delete_runs(s, old, kill=False)
            self._insert(s, SqlRun.__table__, RUN_COLS, runs)
            self._insert(s, SqlTag.__table__, ("key", "value", "run_uuid"), tags)
        return won, decisions, reaped

    def _claim_http(self, parent_id, sweep_id, attempt, jobs, retry_failed, settle_s):
        from .claims import FREE, classify, winner

        before = self.children({j.hash for j in jobs})
        is_live = self.liveness([r for rs in before.values() for r in rs], attempt)
        decisions, todo, dead, old = {}, [], [], {}
        for j in jobs:
            if j.hash in decisions:
                continue
            d = classify(before.get(j.hash, []), retry_failed, is_live)
            decisions[j.hash] = d
            dead += [r.run_id for r in d.dead]
            if d.state == FREE:
                todo.append(j)
                old[j.hash] = [r.run_id for r in d.old_failed]
        reaped = self.discard(dead, only_unfinished=True)

        def create(j):
            return j.hash, self.client.create_run(self.experiment_id, tags=self._claim_tags(
                parent_id, sweep_id, j, attempt)).info.run_id

        mine = dict(self._map(create, todo))
        if not mine:
            return {}, decisions, reaped
        time.sleep(settle_s)  # longer than a create request and the clocks' skew: later claims see ours
        after = self.children(set(mine))
        is_live = self.liveness([r for rs in after.values() for r in rs], attempt)
        won, lost = {}, []
        for h, rid in mine.items():
            w = winner(after.get(h, []), is_live)
            if w is not None and w.run_id == rid:
                won[h] = rid
            else:
                lost.append(rid)
                if w is not None:
                    decisions[h].state, decisions[h].run = "busy", w
                else:
                    decisions[h].state = "done"
        self.discard(lost, only_unfinished=True)
        self.discard([r for h in won for r in old.get(h, [])], only_unfinished=True)
        return won, decisions, reaped

    def results(self, run_ids: list[str]) -> dict[str, tuple[dict, str]]:
        """Final counters and error of recorded runs, to rebuild ledger rows from the store:
        run id -> (counters, error). The metric keys map back to the plain counter names
        (sweeps/metric_names.py counter_name); time series and perf/ timings are left out."""
        from .metric_names import counter_name

        out: dict[str, tuple[dict, str]] = {rid: ({}, "") for rid in run_ids}
        if not run_ids:
            return out
        if self.store is not None:
            from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlTag

            with self.store.ManagedSessionMaker() as s:
                for i in range(0, len(run_ids), 500):
                    ids = run_ids[i:i + 500]
                    for rid, k, v in (s.query(SqlLatestMetric.run_uuid, SqlLatestMetric.key, SqlLatestMetric.value)
                                      .filter(SqlLatestMetric.run_uuid.in_(ids)).all()):
                        c = counter_name(k)
                        if c is not None:
                            out[rid][0][c] = v
                    for rid, v in (s.query(SqlTag.run_uuid, SqlTag.value)
                                   .filter(SqlTag.run_uuid.in_(ids), SqlTag.key == "dmfrag.error").all()):
                        out[rid] = (out[rid][0], v)
            return out

        def one(rid):
            r = self.client.get_run(rid)
            return rid, ({counter_name(k): v for k, v in r.data.metrics.items() if counter_name(k) is not None},
                         r.data.tags.get("dmfrag.error", ""))
        out.update(dict(self._map(one, list(run_ids))))
        return out

    def _map(self, fn, items: list) -> list:
        if getattr(self, "_pool", None) is not None and len(items) > 1:
            return list(self._pool.map(fn, items))
        return [fn(x) for x in items]

    def discard(self, run_ids: Iterable[str], only_unfinished: bool = True) -> int:
        """Remove runs that are not recorded results: claims of interrupted attempts (KILLED, then
        deleted), FAILED runs of a re-run config. A FINISHED run is never deleted."""
        run_ids = list(run_ids)
        if not run_ids:
            return 0
        if self.store is not None:
            with self.store.ManagedSessionMaker(read_only=False) as s:
                self._sql_delete_runs(s, run_ids, kill=True)
            return len(run_ids)
        n = 0
        for rid in run_ids:
            try:
                run = self.client.get_run(rid)
            except Exception:
                continue
            if run.info.status == "FINISHED" or run.info.lifecycle_stage != "active":
                continue
            if run.info.status in ("RUNNING", "SCHEDULED"):
                self.client.set_terminated(rid, "KILLED")
            self.client.delete_run(rid)
            n += 1
        return n

    # -- parent --------------------------------------------------------------------------------

    def start_parent(self, sweep_id: str, name: str, params: dict[str, Any], tags: Optional[dict] = None) -> str:
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{T_ROLE}` = 'parent' and tags.`{T_SWEEP}` = '{sweep_id}'", max_results=1)
        if found:
            rid = found[0].info.run_id
            self.client.update_run(rid, status="RUNNING")  # resumed
            return rid
        run = self.client.create_run(self.experiment_id, run_name=f"{name} {sweep_id[:6]}",
                                     tags={T_ROLE: "parent", T_SWEEP: sweep_id, "dmfrag.sweep_name": name,
                                           **(tags or {})})
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        self.client.log_batch(run.info.run_id, params=items)  # packed to the REST limits by the client
        return run.info.run_id

    def finish_parent(self, run_id: str, files: Iterable[Path], metrics: dict[str, float], failed: bool,
                      note: Optional[str] = None) -> None:
        from mlflow.entities import Metric, RunTag

        ts = int(time.time() * 1000)
        # step 0: a re-run sweep logs its summary again at the same step (the latest wins)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
                              tags=[RunTag("mlflow.note.content", note[:7900])] if note else [])  # MLflow: tags <= 8000 chars
        for f in files:
            self.artifact_client.log_artifact(run_id, str(f))
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    # -- children ------------------------------------------------------------------------------

    def set_sweep(self, jobs) -> None:
        """The sweep whose runs are recorded next: its swept keys name the child runs."""
        from .naming import RunNames

        self.names = RunNames(jobs)

    def run_name(self, job) -> str:
        if self.names is None:
            self.set_sweep([job])
        return self.names.name(job)

    def _artifacts(self, res: dict) -> dict[str, bytes]:
        out = {}
        if res.get("ts_parquet"):
            out["timeseries.parquet"] = res["ts_parquet"]
        if res.get("png"):
            out["directmap.png"] = res["png"]
        if res.get("config_yaml"):
            out["config.yaml"] = res["config_yaml"]
        return out

    def record(self, parent_id: str, sweep_id: str, items: list[tuple[Any, dict]],
               claims: Optional[dict[str, str]] = None) -> list[Optional[str]]:
        """Record finished runs (job, result) as child runs; returns their run ids, in order.
        With `claims` (hash -> the RUNNING run this attempt claimed), each result goes into its
        claim; a claim that is no longer this attempt's (removed as dead by another sweep) is not
        written and gives None."""
        if not items:
            return []
        claims = claims or {}
        if self.mode == "bulk":
            return self._record_bulk(parent_id, sweep_id, items, claims)
        if self.threads <= 1 or len(items) == 1:
            return [self._record_client(parent_id, sweep_id, job, res, claims.get(job.hash)) for job, res in items]
        # a tracking server spends most of a request waiting (network, its database): several
        # runs in flight at once. Every run is waited for before an error is raised, so no run
        # of the chunk is still being written when the caller reacts.
        from concurrent.futures import wait

        futs = [self._pool.submit(self._record_client, parent_id, sweep_id, job, res, claims.get(job.hash))
                for job, res in items]
        wait(futs)
        return [f.result() for f in futs]

    def _child_tags(self, parent_id, sweep_id, job, res) -> dict[str, str]:
        tags = {T_ROLE: "child", T_HASH: job.hash, T_SWEEP: sweep_id, T_POLICY: job.sc.policy.name,
                T_PARENT: parent_id, "mlflow.runName": self.run_name(job), "mlflow.user": self.user,
                "dmfrag.node": str(res.get("node", ""))}
        tags.update(self.names.swept_values(job))  # Group by / compare on the swept keys
        if not res["ok"]:
            tags["dmfrag.error"] = (res.get("error") or "")[:7000]
        return tags

    @staticmethod
    def _metric_rows(res: dict):
        """(key, value, step) of a run: final counters at step 0 under their metric keys
        (sweeps/metric_names.py), then the time series, step = simulated time in ms."""
        from .metric_names import PERF, final_metrics, ts_key

        for k, v in final_metrics(res.get("counters", {})).items():
            yield k, v, 0
        for k in ("wall_s", "compile_s"):
            if res.get(k):
                yield PERF + k, res[k], 0
        series = res.get("series", {})
        t = series.get("t_s")
        for col, values in series.items():
            if col == "t_s":
                continue
            key = ts_key(col)
            for i, v in enumerate(values):
                if v is not None:  # a sparse column
                    yield key, v, (int(round(t[i] * 1000)) if t else i)

    def _params(self, job) -> list[tuple[str, str]]:
        """What the run is and its swept keys, under short names; the whole config is the
        config.yaml artifact."""
        if self.names is None:
            self.set_sweep([job])
        return [(k, _param_value(v)) for k, v in self.names.params(job).items()]

    def _record_bulk(self, parent_id, sweep_id, items, claims: dict) -> list[Optional[str]]:
        now = int(time.time() * 1000)
        runs, tags, params, metrics, latest, ids, updates, written = [], [], [], [], [], [], [], []
        root = _file_path(self.artifact_location)
        eid = int(self.experiment_id)
        for job, res in items:
            rid = claims.get(job.hash) or uuid.uuid4().hex
            ids.append(rid)
            t = self._child_tags(parent_id, sweep_id, job, res)
            start = now - int(1000 * res.get("wall_s", 0.0))
            status = "FINISHED" if res["ok"] else "FAILED"
            if job.hash in claims:
                t[T_ATTEMPT] = self.attempt_id
                updates.append({"s": status, "t0": start, "t1": now, "n": t["mlflow.runName"], "r": rid})
            else:
                runs.append((rid, t["mlflow.runName"], "LOCAL", "", "", self.user, status,
                             start, now, None, "", "active", self._artifact_uri(rid), eid))
            tags += [(k, v, rid) for k, v in t.items()]
            params += [(k, v, rid) for k, v in self._params(job)]
            last = {}
            for k, v, step in self._metric_rows(res):
                is_nan, val = _sanitize(v)
                row = (k, val, now, step, is_nan, rid)
                metrics.append(row)
                last[k] = row  # steps ascend: the last is the latest
            latest += last.values()
            arts = self._artifacts(res)
            if arts:
                if root is not None:
                    d = root / rid / "artifacts"
                    written.append(root / rid)
                    try:
                        d.mkdir(parents=True, exist_ok=True)
                        for name, data in arts.items():
                            (d / name).write_bytes(data)
                    except BaseException:  # a full disk: no partial files left behind
                        _remove_dirs(written)
                        raise
                else:
                    self._log_artifacts_client(rid, arts)
        try:
            return self._commit_bulk(items, runs, tags, params, metrics, latest, ids, updates)
        except BaseException:
            _remove_dirs(written)  # the runs were not committed: neither are their artifacts
            raise

    def _commit_bulk(self, items, runs, tags, params, metrics, latest, ids, updates) -> list[Optional[str]]:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

        mcols = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
        with self.store.ManagedSessionMaker(read_only=False) as s:
            if updates:
                # the claims still ours (RUNNING, active), checked under the lock the claims take
                self._lock_experiment(s)
                claimed = [u["r"] for u in updates]
                owned = set()
                for i in range(0, len(claimed), 500):
                    owned.update(r for (r,) in s.query(SqlRun.run_uuid).filter(
                        SqlRun.run_uuid.in_(claimed[i:i + 500]), SqlRun.status == "RUNNING",
                        SqlRun.lifecycle_stage == "active").all())
                lost = set(claimed) - owned
                if lost:
                    keep = lambda rows: [r for r in rows if r[-1] not in lost]  # noqa: E731
                    tags, params, metrics, latest = keep(tags), keep(params), keep(metrics), keep(latest)
                    updates = [u for u in updates if u["r"] not in lost]
                    ids = [None if r in lost else r for r in ids]
                owned_l = sorted(owned)
                for i in range(0, len(owned_l), 500):  # the claim's tags are replaced by the full set
                    s.query(SqlTag).filter(SqlTag.run_uuid.in_(owned_l[i:i + 500])).delete(synchronize_session=False)
                if updates:
                    from sqlalchemy import bindparam

                    s.execute(SqlRun.__table__.update().where(SqlRun.__table__.c.run_uuid == bindparam("r")).values(
                        status=bindparam("s"), start_time=bindparam("t0"), end_time=bindparam("t1"),
                        name=bindparam("n")), updates)
            self._insert(s, SqlRun.__table__, RUN_COLS, runs)
            self._insert(s, SqlTag.__table__, ("key", "value", "run_uuid"), tags)
            self._insert(s, SqlParam.__table__, ("key", "value", "run_uuid"), params)
            self._insert(s, SqlMetric.__table__, mcols, metrics)
            self._insert(s, SqlLatestMetric.__table__, mcols, latest)
        return ids

    def _insert(self, session, table, cols: tuple[str, ...], rows: list[tuple]) -> None:
        """INSERT many rows in the session's transaction, past SQLAlchemy's per-row parameter
        processing where the driver allows: sqlite through the DB-API cursor's executemany,
        PostgreSQL (psycopg2) as one COPY ... FROM STDIN per table."""
        if not rows:
            return
        dbapi = session.connection().connection.driver_connection
        db = getattr(self.store, "db_type", "")
        if db == "sqlite":
            sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            dbapi.executemany(sql, rows)
        elif db == "postgresql" and type(dbapi).__module__.startswith("psycopg2"):
            import io

            buf = io.StringIO("".join(",".join(map(_csv_field, r)) + "\n" for r in rows))
            names = ", ".join(f'"{c}"' for c in cols)
            with dbapi.cursor() as cur:
                cur.copy_expert(f'COPY "{table.name}" ({names}) FROM STDIN WITH (FORMAT csv)', buf)
        else:
            session.execute(table.insert(), [dict(zip(cols, r)) for r in rows])

    def _artifact_uri(self, run_id: str) -> str:
        """A run's artifact URI, as MLflow makes it: <experiment artifact location>/<run id>/artifacts."""
        return f"{self.artifact_location.rstrip('/')}/{run_id}/artifacts"

    def _log_artifacts_client(self, run_id: str, arts: dict[str, bytes], artifact_uri: str = "") -> None:
        """One upload per file to the run's artifact URI (known here: the writer set it), through
        the artifact repository of its scheme. MlflowClient.log_artifacts would first fetch the
        whole run from the server (params, tags, ~100 metrics) to learn that URI: with a
        tracking server, as much server and database work per run as the upload itself."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        uri = artifact_uri or self._artifact_uri(run_id)
        repo = get_artifact_repository(uri, tracking_uri=self.artifact_client.tracking_uri)
        with tempfile.TemporaryDirectory(prefix="dmfrag-art-") as tmp:
            for name, data in arts.items():
                (Path(tmp) / name).write_bytes(data)
            repo.log_artifacts(tmp)

    def _record_client(self, parent_id, sweep_id, job, res, claim: Optional[str] = None) -> Optional[str]:
        """Three requests per run with at most 100 params (create_run with the tags, or the
        claim's run, one log_batch, set_terminated): MlflowClient.log_batch packs params and
        metrics up to the REST limits itself (100 params, 1000 entities per call)."""
        from mlflow.entities import Metric, Param, RunTag

        ts = int(time.time() * 1000)
        ps = [Param(k, v) for k, v in self._params(job)]
        ms = [Metric(k, float(v), ts, step) for k, v, step in self._metric_rows(res)]
        if claim:
            rid = claim
            tags = [RunTag(k, v) for k, v in self._child_tags(parent_id, sweep_id, job, res).items()]
            try:  # refused when the claim was removed (its run deleted) by another sweep
                self.client.log_batch(rid, metrics=ms, params=ps, tags=tags)
            except Exception as e:
                from mlflow.exceptions import MlflowException

                if isinstance(e, MlflowException) and self.client.get_run(rid).info.lifecycle_stage != "active":
                    return None
                raise
        else:
            run = self.client.create_run(self.experiment_id, tags=self._child_tags(parent_id, sweep_id, job, res))
            rid = run.info.run_id
            self.client.log_batch(rid, metrics=ms, params=ps)
        arts = self._artifacts(res)
        if arts:
            self._log_artifacts_client(rid, arts, "" if claim else run.info.artifact_uri)
        self.client.set_terminated(rid, "FINISHED" if res["ok"] else "FAILED")
        return rid
