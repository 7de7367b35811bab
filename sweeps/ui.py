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


def main(argv: list[str] | None = None) -> None:
    from .paths import default_artifact_root, default_tracking_uri

    ap = argparse.ArgumentParser(prog="python -m sweeps.ui", description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=default_tracking_uri(), help="backend store URI (default: %(default)s)")
    ap.add_argument("--artifacts", default=default_artifact_root(), help="artifact root of new experiments")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("UI_PORT", 5000)))
    a = ap.parse_args(argv)
    args, env = command(a.store, a.artifacts, a.host, a.port)
    print(f"MLflow UI: http://{a.host}:{a.port}  (store {a.store}; Ctrl-C stops it)", file=sys.stderr, flush=True)
    os.execvpe(args[0], args, env)


if __name__ == "__main__":
    main()
