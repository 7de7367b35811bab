"""Checkpoints and saved machines: a run's whole state in one .npz file.

A checkpoint holds the machine's state arrays, the workload stream (live allocations and
objects, calendar, reclaim FIFO, the callers' cursors), the samples taken and the loop's
clock, plus the config it belongs to. A run with the same config and `checkpoint_path`
resumes from it and gives the same counters as a run never stopped (tests/test_stream.py).
A saved machine (`sim.save_machine`) is the same file; `machine.snapshot=path` continues it
under this config's policy and duration_s.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from .config import ConfigError
from .layout import NIL

VERSION = 6  # 2: 16-byte page records (pg_owner, compaction); 3: settings max_pfn_mapped, direct_gbpages;
# 4: the stream's burst_k (a caller's at_s burst and Poisson arrivals are two sources); 5: Live.g without
# the live-object count nobody read; 6: a row per load copy in the callers' cursors (next_k, burst_k, ...)
# keys that may differ between a saved machine and the run continuing it
CONTINUE_FREE = {"policy", "workload.duration_s", "machine.snapshot"}
POLICY_STATE = ("pack_pfn", "pack_list", "pack_used", "pack_bits", "var")  # kept from the new policy's set-up
PAGE_FIELDS = ("pg_next", "pg_prev", "pg_owner", "pg_order", "pg_flags", "pg_mt", "prot")  # saved as `s.pages`
# not saved: alloc_pfn is the stream's lv.a_pfn (re-pointed by Run.step), mig_log the step API's scratch
NOT_SAVED = PAGE_FIELDS + ("alloc_pfn", "mig_log")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity(sc) -> dict:
    """What a checkpoint must match to be resumed: the whole config but where it is kept."""
    d = _flat(dataclasses.asdict(sc))
    for k in ("checkpoint_path", "checkpoint_every_s"):
        d.pop(k, None)
    return d


def save(path, run, snapshot: bool = False) -> None:
    """Write the run's state to path atomically (a temporary file, then rename)."""
    if run.ahead is not None:
        raise RuntimeError("a window was built ahead (Run.step(overlap=True)): checkpoint after a step without")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"s.{k}": v for k, v in run.s._asdict().items() if k not in NOT_SAVED}
    arrays["s.pages"] = run.s.pg_next.base if run.s.pg_next.base is not None else run.s.pg_next
    arrays.update({f"lv.{k}": v for k, v in run.stream.lv._asdict().items()})
    arrays["samples"] = run.samples[:run.k]
    arrays["clock"] = run.clock
    meta = {"version": VERSION, "config": identity(run.sc), "policy": run.sc.policy.name,
            "window_s": run.sc.window_s, "events": run.events, "t": run.t, "snapshot": snapshot}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path):
    z = np.load(path, allow_pickle=False)
    meta = json.loads(bytes(z["meta"]).decode())
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {meta.get('version')}, this dmfrag reads {VERSION}")
    return z, meta


def _restore(run, z, meta):
    s = run.s
    pages = s.pg_next.base if s.pg_next.base is not None else s.pg_next
    np.copyto(pages, z["s.pages"])
    keep = ("par",) + (POLICY_STATE if meta["policy"] != run.sc.policy.name else ())
    for k, v in s._asdict().items():
        key = f"s.{k}"
        if key in z.files and k not in keep and k not in NOT_SAVED:
            if k in ("pcp_head", "pcp_tail") and v.shape[0] == z[key].shape[0] and v.shape[1] > z[key].shape[1]:
                # a machine aged with 3 per-CPU lists continued under freetype (a 4th, unmapped list)
                v[:] = NIL
                v[:, :z[key].shape[1]] = z[key]
                continue
            if v.shape != z[key].shape:
                raise ValueError(f"saved state {k} has shape {z[key].shape}, this machine {v.shape}")
            np.copyto(v, z[key])
    lv = run.stream.lv._replace(**{k: np.array(z[f"lv.{k}"]) for k in run.stream.lv._fields})
    run.stream.lv = lv
    run.s = run.s._replace(alloc_pfn=lv.a_pfn)  # the owners' slots (pg_owner) index the restored a_pfn
    k = z["samples"].shape[0]
    run.samples[:k] = z["samples"]
    run.k = k
    run.clock[:] = z["clock"]
    run.events = int(meta["events"])
    run._t = run.stream.time_reached
    return run


def load_if_matches(path, sc, make_run):
    """The run resumed from path when it holds a checkpoint of this very config, else None."""
    if not Path(path).is_file():
        return None
    z, meta = _read(path)
    if meta["config"] != json.loads(json.dumps(identity(sc), default=str)):
        return None  # another config's checkpoint: start over (it is overwritten)
    return _restore(make_run(sc), z, meta)


def load_snapshot(path, sc, make_run):
    """A saved machine continued under this config: the same machine, workload and seed; the
    policy may differ only from a machine aged under `none` (a cache's state cannot move)."""
    if not Path(path).is_file():
        raise ConfigError("machine.snapshot", str(path), "a file written by sim.save_machine")
    z, meta = _read(path)
    mine = json.loads(json.dumps(identity(sc), default=str))
    for key in meta["config"].keys() | mine.keys():  # a key only one side has (a caller added) differs too
        if any(key == f or key.startswith(f + ".") for f in CONTINUE_FREE):
            continue
        if mine.get(key) != meta["config"].get(key):
            raise ConfigError(key, mine.get(key), f"{meta['config'].get(key)!r}, as in the saved machine {path}")
    if meta["policy"] not in ("none", sc.policy.name):
        raise ConfigError("policy", sc.policy.name,
                          f"{meta['policy']!r} (the machine was aged under it; only one aged under 'none' "
                          "can continue under another policy)")
    if float(sc.workload.duration_s) < float(meta["t"]):
        raise ConfigError("workload.duration_s", sc.workload.duration_s,
                          f">= {meta['t']} s, the saved machine's uptime")
    return _restore(make_run(sc), z, meta)
