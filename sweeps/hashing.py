"""A run's identity: sha256 of the canonical JSON of its resolved config.

Canonical JSON = json.dumps(dataclasses.asdict(cfg), sort_keys=True, separators=(",", ":")),
built here node by node so that a sweep's jobs, which share untouched sub-configs with their
combination's base config (copy-on-write, see compose.py), serialise only what changed
(`memo`: id(node) -> (node, json); the node is kept alive so its id cannot be reused).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Optional

_dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":"), default=str).encode


@functools.lru_cache(maxsize=None)
def _field_names(cls) -> tuple[str, ...]:
    """The fields that make a run what it is: those marked runtime (how it is carried out:
    window_s, checkpoints) are not part of its identity."""
    return tuple(sorted(f.name for f in dataclasses.fields(cls) if not f.metadata.get("runtime")))


def _key(k: Any) -> str:
    # the key conversion json.dumps applies to dict keys
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, float):
        return _dumps(k)
    return str(k)


def _json(obj: Any, memo: Optional[dict]) -> str:
    is_dc = dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    if is_dc or isinstance(obj, (dict, list, tuple)):
        if memo is not None:
            hit = memo.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
        if is_dc:
            s = "{" + ",".join(f"{_dumps(n)}:{_json(getattr(obj, n), memo)}" for n in _field_names(type(obj))) + "}"
        elif isinstance(obj, dict):
            try:
                items = sorted(obj.items())
            except TypeError:  # mixed key types: order by their JSON form
                items = sorted(obj.items(), key=lambda kv: _key(kv[0]))
            s = "{" + ",".join(f"{_dumps(_key(k))}:{_json(v, memo)}" for k, v in items) + "}"
        else:
            s = "[" + ",".join(_json(v, memo) for v in obj) + "]"
        if memo is not None:
            memo[id(obj)] = (obj, s)
        return s
    return _dumps(obj)


def canonical_json(obj: Any, memo: Optional[dict] = None) -> str:
    return _json(obj, memo)


def config_hash(obj: Any, memo: Optional[dict] = None) -> str:
    """obj: a SimConfig or its resolved dict (the same config gives the same hash)."""
    return hashlib.sha256(canonical_json(obj, memo).encode()).hexdigest()


def sweep_id(hashes) -> str:
    """A sweep is the set of its configs: the same sweep re-launched has the same id."""
    return hashlib.sha256("\n".join(sorted(set(hashes))).encode()).hexdigest()[:16]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'machine': {'mem_mib': 1}} -> {'machine.mem_mib': 1}; lists stay values."""
    if dataclasses.is_dataclass(obj):
        obj = {n: getattr(obj, n) for n in _field_names(type(obj))}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if dataclasses.is_dataclass(v):
            out.update(flatten(v, key + "."))
        elif isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
