"""The ledger: a local cache of which configs (by hash) are recorded, as parquet files under one
folder. The store is the source of truth (sweeps/claims.py): a sweep skips what the store has
recorded, and rows missing here are rebuilt from the store (service._sync_ledger).

Append-safe: every batch of results is one new part file (written to a temporary name, then
renamed, so a killed driver leaves whole files only); `compact()` merges the parts into one
file. A hash's latest row wins (a failed config that is re-run gets a newer row).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

import polars as pl

SCHEMA = {
    "hash": pl.Utf8, "status": pl.Utf8, "error": pl.Utf8, "run_id": pl.Utf8, "sweep_id": pl.Utf8,
    "params": pl.Utf8, "metrics": pl.Utf8, "wall_s": pl.Float64, "recorded_at": pl.Float64,
}
DONE, FAILED = "done", "failed"


class Ledger:
    def __init__(self, root: Path | str, store_key: str):
        # one ledger per (tracking store, experiment): a hash recorded in another store is not "done" here
        self.dir = Path(root) / store_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = 0

    def parts(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("*.parquet"))

    def read(self) -> pl.DataFrame:
        files = self.parts()
        if not files:
            return pl.DataFrame(schema=SCHEMA)
        dfs = []
        for f in files:
            try:
                dfs.append(pl.read_parquet(f))
            except FileNotFoundError:  # compacted away by a concurrent sweep sharing this ledger
                pass
        if not dfs:
            return pl.DataFrame(schema=SCHEMA)
        df = pl.concat(dfs, how="vertical_relaxed")
        return (df.sort("recorded_at").unique(subset="hash", keep="last", maintain_order=True))

    def latest(self) -> dict[str, dict]:
        return {r["hash"]: r for r in self.read().iter_rows(named=True)}

    def append(self, rows: Iterable[dict]) -> Optional[Path]:
        rows = list(rows)
        if not rows:
            return None
        now = time.time()
        for r in rows:
            r.setdefault("recorded_at", now)
            for k in ("params", "metrics"):
                if not isinstance(r.get(k), str):
                    r[k] = json.dumps(r.get(k) or {}, default=str)
        df = pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in rows], schema=SCHEMA)
        self._seq += 1
        name = f"part-{time.time_ns()}-{os.getpid()}-{self._seq:06d}-{uuid.uuid4().hex[:6]}.parquet"
        _write(df, self.dir / name)
        return self.dir / name

    def compact(self) -> None:
        files = self.parts()
        if len(files) <= 1:
            return
        df = self.read()
        name = f"compact-{time.time_ns()}-{os.getpid()}.parquet"
        _write(df, self.dir / name)
        for f in files:
            f.unlink(missing_ok=True)


def _write(df: pl.DataFrame, path: Path) -> None:
    """Whole files only: written to a temporary name, renamed; the temporary file is removed
    when writing fails (a full disk)."""
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
