"""Exactly once, decided from the store: what the runs recorded for one config hash mean.

The store (not the ledger) says whether a config is recorded. For one config hash, its active
child runs are:
* FINISHED: recorded. Never deleted, whoever made it; the config is skipped.
* FAILED: recorded as failed. Skipped, or with sweep.retry_failed re-run; the FAILED run is
  deleted by the attempt that wins the new claim.
* RUNNING: a claim. Live (its attempt's lease holds, sweeps/lease.py): another attempt is running
  the config; this one waits for it. Dead (the attempt was killed): removed (KILLED, deleted) by
  whichever attempt claims the config next.
Claims are made in the store: on a SQL store in one transaction per batch that holds the
experiment row's lock (check, then insert), over HTTP (no transactions) by creating RUNNING
runs, waiting `settle_s`, reading back, and the earliest live claim wins; losers delete their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

DONE, FAILED_STATE, BUSY, FREE = "done", "failed", "busy", "free"


@dataclass
class StoreRun:
    run_id: str
    hash: str
    status: str
    start_time: int
    attempt: str = ""
    parent: str = ""


@dataclass
class Decision:
    state: str  # done / failed / busy / free
    run: Optional[StoreRun] = None  # the recorded run (done / failed) or the live claim (busy)
    dead: list = field(default_factory=list)  # RUNNING claims of interrupted attempts
    old_failed: list = field(default_factory=list)  # FAILED runs replaced when the config is re-run


def _order(r: StoreRun):
    return (r.start_time, r.run_id)


def classify(runs: list[StoreRun], retry_failed: bool, is_live: Callable[[StoreRun], bool]) -> Decision:
    finished = sorted((r for r in runs if r.status == "FINISHED"), key=_order)
    if finished:
        return Decision(DONE, finished[0])
    running = [r for r in runs if r.status in ("RUNNING", "SCHEDULED")]
    live = sorted((r for r in running if is_live(r)), key=_order)
    dead = [r for r in running if r not in live]
    failed = sorted((r for r in runs if r.status in ("FAILED", "KILLED")), key=_order)
    if live:
        return Decision(BUSY, live[0], dead=dead)
    if failed and not retry_failed and any(r.status == "FAILED" for r in failed):
        return Decision(FAILED_STATE, [r for r in failed if r.status == "FAILED"][-1], dead=dead)
    return Decision(FREE, None, dead=dead, old_failed=failed)


def winner(runs: list[StoreRun], is_live: Callable[[StoreRun], bool]) -> Optional[StoreRun]:
    """Without transactions: among the live claims of a config, the earliest wins (None when the
    config is already FINISHED: every claim loses)."""
    if any(r.status == "FINISHED" for r in runs):
        return None
    live = sorted((r for r in runs if r.status in ("RUNNING", "SCHEDULED") and is_live(r)), key=_order)
    return live[0] if live else None
