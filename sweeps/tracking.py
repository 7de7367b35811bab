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
from typing import Any, Iterable, Optional
from urllib.parse import unquote, urlparse

MAX_PARAM_VALUE = 6000
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

T_KIND = "mlflow.experimentKind"
T_ROLE, T_HASH, T_SWEEP, T_POLICY, T_PARENT = ("dmfrag.role", "dmfrag.config_hash", "dmfrag.sweep_id",
                                              "dmfrag.policy", "mlflow.parentRunId")


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


class Tracker:
    def __init__(self, uri: str, experiment: str, artifact_root: Optional[str] = None, mode: str = "auto",
                 threads: int = 4):
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)  # a sqlite store creates its database here
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                self.client.create_experiment(experiment, artifact_location=artifact_root)
            except Exception:  # created concurrently by another driver
                pass
            exp = self.client.get_experiment_by_name(experiment)
        if exp.lifecycle_stage != "active":
            self.client.restore_experiment(exp.experiment_id)
        if exp.tags.get(T_KIND) != "custom_model_development":
            # the UI opens an experiment on its runs table, not on the GenAI (traces) overview
            self.client.set_experiment_tag(exp.experiment_id, T_KIND, "custom_model_development")
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
            self.store = store
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
        self.user = os.environ.get("USER") or os.environ.get("LOGNAME") or "dmfrag"

    # -- queries -------------------------------------------------------------------------------

    def children_by_hash(self) -> dict[str, list[tuple[str, str]]]:
        """Active child runs of this experiment: config hash -> [(run_id, status)]."""
        out: dict[str, list[tuple[str, str]]] = {}
        if self.store is not None:
            from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

            with self.store.ManagedSessionMaker() as s:
                q = (s.query(SqlTag.value, SqlRun.run_uuid, SqlRun.status)
                     .join(SqlRun, SqlRun.run_uuid == SqlTag.run_uuid)
                     .filter(SqlTag.key == T_HASH, SqlRun.experiment_id == int(self.experiment_id),
                             SqlRun.lifecycle_stage == "active"))
                for h, rid, st in q.all():
                    out.setdefault(h, []).append((rid, st))
            return out
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{T_ROLE}` = 'child'",
                                           max_results=1000, page_token=token)
            for r in page:
                out.setdefault(r.data.tags.get(T_HASH, ""), []).append((r.info.run_id, r.info.status))
            token = page.token
            if not token:
                return out

    def discard(self, run_ids: Iterable[str]) -> int:
        """Runs of a killed driver or of a config that is re-run: KILLED, then deleted."""
        n = 0
        for rid in run_ids:
            run = self.client.get_run(rid)
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

    def record(self, parent_id: str, sweep_id: str, items: list[tuple[Any, dict]]) -> list[str]:
        """Record finished runs (job, result) as child runs; returns their run ids, in order."""
        if not items:
            return []
        if self.mode == "bulk":
            return self._record_bulk(parent_id, sweep_id, items)
        if self.threads <= 1 or len(items) == 1:
            return [self._record_client(parent_id, sweep_id, job, res) for job, res in items]
        # a tracking server spends most of a request waiting (network, its database): several
        # runs in flight at once. Every run is waited for before an error is raised, so no run
        # of the chunk is still being written when the caller reacts.
        from concurrent.futures import wait

        futs = [self._pool.submit(self._record_client, parent_id, sweep_id, job, res) for job, res in items]
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

    def _record_bulk(self, parent_id, sweep_id, items) -> list[str]:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

        now = int(time.time() * 1000)
        runs, tags, params, metrics, latest, ids = [], [], [], [], [], []
        root = _file_path(self.artifact_location)
        loc = self.artifact_location.rstrip("/")
        eid = int(self.experiment_id)
        for job, res in items:
            rid = uuid.uuid4().hex
            ids.append(rid)
            t = self._child_tags(parent_id, sweep_id, job, res)
            start = now - int(1000 * res.get("wall_s", 0.0))
            runs.append((rid, t["mlflow.runName"], "LOCAL", "", "", self.user, "FINISHED" if res["ok"] else "FAILED",
                         start, now, None, "", "active", f"{loc}/{rid}/artifacts", eid))
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
                    d.mkdir(parents=True, exist_ok=True)
                    for name, data in arts.items():
                        (d / name).write_bytes(data)
                else:
                    self._log_artifacts_client(rid, arts)
        mcols = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
        with self.store.ManagedSessionMaker(read_only=False) as s:
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

    def _log_artifacts_client(self, run_id: str, arts: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory(prefix="dmfrag-art-") as tmp:
            for name, data in arts.items():
                (Path(tmp) / name).write_bytes(data)
            self.artifact_client.log_artifacts(run_id, tmp)

    def _record_client(self, parent_id, sweep_id, job, res) -> str:
        """Three requests per run with at most 100 params (create_run with the tags, one
        log_batch, set_terminated): MlflowClient.log_batch packs params and metrics up to the
        REST limits itself (100 params, 1000 entities per call)."""
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, tags=self._child_tags(parent_id, sweep_id, job, res))
        rid = run.info.run_id
        ts = int(time.time() * 1000)
        ps = [Param(k, v) for k, v in self._params(job)]
        ms = [Metric(k, float(v), ts, step) for k, v, step in self._metric_rows(res)]
        self.client.log_batch(rid, metrics=ms, params=ps)
        arts = self._artifacts(res)
        if arts:
            self._log_artifacts_client(rid, arts)
        self.client.set_terminated(rid, "FINISHED" if res["ok"] else "FAILED")
        return rid
