"""Default locations, all absolute and under the project folder (never relative to a job's
working directory)."""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("DMFRAG_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    from sim.paths import conf_dir

    return conf_dir().resolve().parent


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def default_artifact_root() -> str:
    return (project_root() / "mlartifacts").as_uri()


def default_ledger_dir() -> Path:
    return project_root() / ".ledger"


def default_checkpoint_dir() -> Path:
    return project_root() / ".checkpoints"
