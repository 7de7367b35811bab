"""`make ui` / `python -m sweeps.ui`: the MLflow UI on the project's store, sized for a small
machine: one server worker, bound to 127.0.0.1, without MLflow's background job runner (GenAI
jobs: 7 queue consumers polling, ~0.7 of a core when idle).

    python -m sweeps.ui [--store sqlite:////abs/mlflow.db] [--artifacts file:///abs/mlartifacts] [--port 5000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def command(store: str, artifacts: str, host: str = "127.0.0.1", port: int = 5000) -> tuple[list[str], dict]:
    """argv and environment of the UI server."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    argv = [mlflow, "server", "--backend-store-uri", store, "--default-artifact-root", artifacts,
            "--host", host, "--port", str(port), "--workers", "1"]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return argv, env


def url(store: str, host: str = "127.0.0.1", port: int = 5000, experiment: str = "dmfrag") -> str:
    """The page to open: the experiment's runs table (MLflow 3 opens its GenAI overview otherwise)."""
    base = f"http://{host}:{port}"
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).exists():
        return base  # not created by a sweep yet (and not to be created here)
    try:
        from mlflow import MlflowClient

        exp = MlflowClient(store).get_experiment_by_name(experiment)
        if exp is not None:
            return f"{base}/#/experiments/{exp.experiment_id}?workflowType=machine_learning"
    except Exception:  # no store yet: the start page
        pass
    return base


def main(argv: list[str] | None = None) -> None:
    from .paths import default_artifact_root, default_tracking_uri

    ap = argparse.ArgumentParser(prog="python -m sweeps.ui", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=default_tracking_uri(), help="backend store URI (default: %(default)s)")
    ap.add_argument("--artifacts", default=default_artifact_root(), help="artifact root of new experiments")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("UI_PORT", 5000)))
    a = ap.parse_args(argv)
    args, env = command(a.store, a.artifacts, a.host, a.port)
    print(f"MLflow UI on {a.store} (Ctrl-C stops it): {url(a.store, a.host, a.port)}", file=sys.stderr, flush=True)
    os.execvpe(args[0], args, env)


if __name__ == "__main__":
    main()
