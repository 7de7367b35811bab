"""The Ray task: run a chunk of configs, one simulation each, and return compact results.

An exception inside one simulation marks that run failed (with its error) and the chunk goes
on; a task lost with its worker is retried by Ray (`max_retries`, set by the executor).
"""
from __future__ import annotations

import io
import os
import time
import traceback
from typing import Any

FAIL_ENV = "DMFRAG_SWEEP_FAIL_IF"  # test hook, read by the driver: "key=value" -> that run raises


def downsample(ts, steps: int, columns=("*",)):
    n = ts.height
    if steps <= 0 or n == 0:
        return {}
    if "*" not in columns:
        ts = ts.select(["t_s"] + [c for c in columns if c in ts.columns and c != "t_s"])
    if n > steps:
        import numpy as np

        idx = np.unique(np.linspace(0, n - 1, steps).round().astype(int))
        ts = ts[idx]
    return {c: ts[c].to_list() for c in ts.columns}


def _matches(sc, cond: str) -> bool:
    from .compose import _get

    key, _, want = cond.partition("=")
    v = _get(sc, key.strip().split("."))
    return v is not None and str(v) == want.strip()


def with_checkpoint(h: str, sc, checkpoint_dir):
    """A run longer than its checkpoint interval keeps a checkpoint in checkpoint_dir (named by
    its config hash), so a Ray retry after a lost worker resumes it instead of starting over."""
    if not checkpoint_dir or sc.checkpoint_path or sc.workload.duration_s <= sc.checkpoint_every_s:
        return sc, None
    import dataclasses
    from pathlib import Path

    path = Path(checkpoint_dir) / f"{h}.npz"
    return dataclasses.replace(sc, checkpoint_path=str(path)), path


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def config_yaml(sc) -> bytes:
    """The full resolved config of a run, as YAML (the child run's config.yaml artifact)."""
    import dataclasses

    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~1 ms instead of ~13 ms
    return yaml.dump(_plain(dataclasses.asdict(sc)), Dumper=dumper, sort_keys=False, default_flow_style=None,
                     width=100).encode()


def run_one(h: str, sc, opts: dict) -> dict[str, Any]:
    import sim

    t0 = time.perf_counter()
    out: dict[str, Any] = {"hash": h, "ok": False, "error": None, "counters": {}, "series": {},
                           "ts_parquet": None, "png": None, "wall_s": 0.0, "node": os.uname().nodename}
    try:
        out["config_yaml"] = config_yaml(sc)
        fail_if = opts.get("fail_if")
        if fail_if and _matches(sc, fail_if):
            raise RuntimeError(f"injected failure ({FAIL_ENV}={fail_if})")
        sc, ckpt = with_checkpoint(h, sc, opts.get("checkpoint_dir"))
        res = sim.simulate(sc, overlap=False)  # one task per CPU: no window-building thread
        if ckpt:
            ckpt.unlink(missing_ok=True)  # recorded from here on; the checkpoint is no longer needed
        out["counters"] = {k: float(v) for k, v in res.counters.items()}
        steps = opts.get("timeseries_steps", 50)
        if steps > 0:  # res.timeseries is built when read
            out["series"] = downsample(res.timeseries, steps, opts.get("timeseries_metrics", ("*",)))
        if opts.get("timeseries_artifact", True):
            buf = io.BytesIO()
            res.timeseries.write_parquet(buf)
            out["ts_parquet"] = buf.getvalue()
        if opts.get("picture", True):
            from sim.picture import save_png

            buf = io.BytesIO()
            title = f"{sc.workload.name} / policy {sc.policy.name} / {sc.machine.mem_mib} MiB / seed {sc.seed}"
            save_png(res.directmap, buf, title)
            out["png"] = buf.getvalue()
        out["ok"] = True
    except Exception as e:  # one run's failure does not stop the chunk
        out["error"] = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=8))[-4000:]
    out["wall_s"] = time.perf_counter() - t0
    return out


def warm_up() -> float | None:
    """Compile the model once per machine (sim.jitcache: under a file lock, the other workers
    wait and load numba's cache); says so on the worker's stdout, which Ray shows the driver."""
    from sim.jitcache import ensure_warm

    try:
        return ensure_warm(say=lambda m: print(f"dmfrag: {m}", flush=True))
    except Exception:  # a model that does not compile fails in its runs, with the error
        return None


def run_chunk(items: list[tuple[str, Any]], opts: dict) -> list[dict[str, Any]]:
    compile_s = warm_up()
    out = [run_one(h, sc, opts) for h, sc in items]
    if compile_s and out:
        out[0]["compile_s"] = compile_s  # perf/compile_s of the run that waited for it
    return out


_remote = None


def remote_run_chunk(max_retries: int, memory: int = 0):
    """The Ray remote function (created lazily so importing sweeps does not import ray);
    `memory`: the task's memory request in bytes (the largest estimate of its runs, sim.memory)."""
    global _remote
    import ray

    if _remote is None:
        _remote = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(run_chunk)
    kw = {"memory": int(memory)} if memory > 0 else {}
    return _remote.options(max_retries=max_retries, retry_exceptions=False, **kw)
