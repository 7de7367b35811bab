"""An empty MLflow sqlite store for a test, copied from one created once per machine and MLflow
version: creating a store runs MLflow's ~50 alembic migrations, seconds each time, and the
sweep tests create one per test. What the driver finds is exactly what it would have created."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _template() -> Path:
    import mlflow

    d = Path(tempfile.gettempdir()) / "dmfrag-test-stores"
    d.mkdir(exist_ok=True)
    t = d / f"empty-mlflow-{mlflow.__version__}.db"
    if t.exists():
        return t
    with open(d / "lock", "w") as lock:  # pytest-xdist workers: one creates, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not t.exists():
            tmp = d / f"creating-{os.getpid()}.db"
            tmp.unlink(missing_ok=True)
            code = (f"from mlflow import MlflowClient; MlflowClient('sqlite:///{tmp}').search_experiments()")
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            tmp.rename(t)
    return t


def empty_store(db: Path) -> Path:
    """db: a migrated, empty MLflow sqlite store (its parent created)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), db)
    return db
