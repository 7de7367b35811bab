"""Fast composition of a sweep's jobs.

Hydra composes a config in ~30 ms or more; a sweep of 10,000 jobs would spend minutes on it.
Here each distinct combination of *structural* overrides (config-group choices such as
`policy=unmapped_cache`, and `+key` / `~key` / `++key`) is composed once with Hydra's config
loader; each job's remaining `key=value` overrides are applied to the validated `SimConfig`
dataclass by copy-on-write along the key's path, converting the value to the field's type (what
OmegaConf would do), and the whole config is validated again with `sim.config.validate`. Values
that are not scalars or flat maps, and combinations whose config contains interpolations, take
the exact slow path (OmegaConf.update on a copy of the composed config, then
`sim.to_sim_config`). Every job is composed and validated before any task starts.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import gc
import re
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

import sim
from sim.config import POLICY_KNOBS, ConfigError, SimConfig, policy_baseline, reset_unused_knobs, validate

from .hashing import config_hash
from .schema import RUNTIME_KEYS

SIM_KEYS = tuple(f.name for f in dataclasses.fields(SimConfig))
_KNOB_NAMES = {f.name for f in dataclasses.fields(sim.config.PolicyConfig)} - {"name"}


_KEY = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_SIMPLE = re.compile(rf"^({_KEY})=(.*)$")
_INT = re.compile(r"^[+-]?(?:0|[1-9]\d*)$")
_FLOAT = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?\d+[eE][+-]?\d+$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_RESERVED = {"true", "false", "null", "inf", "nan", "choice", "range", "interval", "glob", "shuffle", "sort",
             "tag", "str", "int", "float", "bool", "json_str", "extend_list"}


@dataclass(frozen=True)
class SimpleOverride:
    """`key=value` with a plain scalar value: what Hydra's parser returns for it, without ANTLR
    (~1 ms per override). Anything else goes to Hydra's OverridesParser."""

    key_or_group: str
    _value: Any
    package: None = None

    @property
    def type(self):
        from hydra.core.override_parser.types import OverrideType

        return OverrideType.CHANGE

    def value(self) -> Any:
        return self._value

    def is_sweep_override(self) -> bool:
        return False

    def get_key_element(self) -> str:
        return self.key_or_group

    @staticmethod
    def parse(s: str) -> "Optional[SimpleOverride]":
        m = _SIMPLE.match(s)
        if m is None:
            return None
        key, v = m.group(1), m.group(2)
        if _INT.match(v):
            return SimpleOverride(key, int(v))
        if _FLOAT.match(v):
            return SimpleOverride(key, float(v))
        low = v.lower()
        if low in ("true", "false"):
            return SimpleOverride(key, low == "true")
        if low == "null":
            return SimpleOverride(key, None)
        if _WORD.match(v) and low not in _RESERVED:
            return SimpleOverride(key, v)
        return None


class SlowPath(Exception):
    """This override cannot be applied to the dataclass directly."""


@dataclass
class Job:
    idx: int
    overrides: tuple[str, ...]
    sc: SimConfig
    hash: str
    params: dict[str, Any]  # override key (or group) -> resolved value (or group choice)
    mem: int = 0  # estimated peak memory of the run, bytes (sim.memory), the Ray task's request


@dataclass
class ComposeStats:
    jobs: int = 0
    combos: int = 0
    slow_jobs: int = 0
    hydra_s: float = 0.0  # time in Hydra composition (once per combination)
    total_s: float = 0.0

    def per_job_ms(self) -> float:
        return 1e3 * self.total_s / max(self.jobs, 1)


# ---------------------------------------------------------------------------
# typed assignment on dataclasses


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp):
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(value: Any, tp, key: str) -> Any:
    """Convert an override value to the field type like OmegaConf's typed nodes do."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(key, value, "a value (this key is not optional)")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(key, value, "a boolean")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(key, value, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(key, value, "an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(key, value, "a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, value, "a number")
    if tp is str:
        if isinstance(value, (str, int, float, bool)):
            return str(value) if not isinstance(value, bool) else str(value).lower()
        raise ConfigError(key, value, "a string")
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is list and isinstance(value, list):
        (et,) = typing.get_args(tp) or (Any,)
        if dataclasses.is_dataclass(et) or typing.get_origin(et) is not None:
            raise SlowPath(key)
        return [_convert(v, et, f"{key}[{i}]") for i, v in enumerate(value)]  # a list replaces a list
    if origin is dict and isinstance(value, dict):
        kt, vt = typing.get_args(tp)
        if dataclasses.is_dataclass(vt) or typing.get_origin(vt) is not None:
            raise SlowPath(key)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise SlowPath(key)


def _assign(node: Any, path: Sequence[str], value: Any, dotted: str, i: int = 0) -> Any:
    """Return a copy of `node` with `path` set to `value` (copy-on-write along the path)."""
    key = path[i]
    last = i == len(path) - 1
    if dataclasses.is_dataclass(node):
        hints = _hints(type(node))
        if key not in hints:
            raise ConfigError(dotted, value, f"an existing key: '{key}' is not in {type(node).__name__} "
                                             f"(use +{dotted}=... to add a key)")
        old = getattr(node, key)
        if last:
            new = _convert(value, hints[key], dotted)
            if isinstance(new, dict) and isinstance(old, dict):
                new = {**old, **new}  # Hydra merges a map into a map
        else:
            if old is None:
                raise SlowPath(dotted)
            new = _assign(old, path, value, dotted, i + 1)
        return dataclasses.replace(node, **{key: new})
    if isinstance(node, dict):
        match = next((k for k in node if str(k) == key), None)
        if match is None:
            raise ConfigError(dotted, value, f"an existing key: '{key}' is not in the map "
                                             f"(use +{dotted}=... to add one)")
        out = dict(node)
        if last:
            old = node[match]
            if dataclasses.is_dataclass(old) or isinstance(old, (dict, list)):
                raise SlowPath(dotted)
            out[match] = _convert(value, type(old) if old is not None else Any, dotted)
        else:
            out[match] = _assign(node[match], path, value, dotted, i + 1)
        return out
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        out = list(node)
        old = node[int(key)]
        if not last or dataclasses.is_dataclass(old) or isinstance(old, (dict, list)):
            raise SlowPath(dotted)
        out[int(key)] = _convert(value, type(old) if old is not None else Any, dotted)
        return out
    raise SlowPath(dotted)


def _get(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if dataclasses.is_dataclass(obj):
            obj = getattr(obj, key)
        elif isinstance(obj, dict):
            obj = next((v for k, v in obj.items() if str(k) == key), None)
        elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            obj = obj[int(key)]
        else:
            return None
    return obj


# ---------------------------------------------------------------------------
# composition


@dataclass
class _Combo:
    base: SimConfig
    base_dc: DictConfig  # composed sim part (unresolved), for the slow path
    choices: dict[str, str]
    fast: bool


@dataclass
class Composer:
    """Compose many jobs: Hydra once per structural-override combination."""

    config_loader: Any  # hydra ConfigLoader
    master_config: DictConfig
    stats: ComposeStats = field(default_factory=ComposeStats)
    _parsed: dict = field(default_factory=dict)
    _combos: dict = field(default_factory=dict)
    _groups: Optional[set] = None
    _memo: dict = field(default_factory=dict)  # canonical JSON of shared sub-configs (hashing.py)
    swept_knobs: set = field(default_factory=set)  # policy knobs with more than one value in the sweep

    def __post_init__(self):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._parser = OverridesParser.create(config_loader=self.config_loader)

    def groups(self) -> set:
        if self._groups is None:
            out = set()

            def walk(parent):
                for g in self.config_loader.list_groups(parent):
                    full = f"{parent}/{g}" if parent else g
                    out.add(full)
                    walk(full)

            walk("")
            self._groups = out
        return self._groups

    def parse(self, s: str):
        o = self._parsed.get(s)
        if o is None:
            o = SimpleOverride.parse(s) or self._parser.parse_override(s)
            if o.is_sweep_override():
                raise ConfigError(o.get_key_element(), s, "a single value per job")
            self._parsed[s] = o
        return o

    def is_structural(self, o) -> bool:
        from hydra.core.override_parser.types import OverrideType

        if o.type != OverrideType.CHANGE or o.package is not None:
            return True
        return o.key_or_group.replace(".", "/") in self.groups()

    def combo(self, structural: tuple[str, ...]) -> _Combo:
        c = self._combos.get(structural)
        if c is None:
            t0 = time.perf_counter()
            cfg = self.config_loader.load_sweep_config(self.master_config, list(structural))
            self.stats.hydra_s += time.perf_counter() - t0
            base_dc = OmegaConf.masked_copy(cfg, list(SIM_KEYS))
            OmegaConf.set_struct(base_dc, True)
            base = sim.to_sim_config(base_dc)
            raw = OmegaConf.to_container(base_dc, resolve=False)
            fast = "${" not in repr(raw)
            choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices)) if "hydra" in cfg else {}
            c = _Combo(base, base_dc, choices, fast)
            self._combos[structural] = c
            self.stats.combos += 1
        return c

    def compose_job(self, idx: int, overrides: Sequence[str]) -> Job:
        structural, values, params = [], [], {}
        for s in overrides:
            o = self.parse(s)
            if self.is_structural(o):
                structural.append(s)
                params[o.key_or_group.replace("/", ".")] = o.value() if o.value() is not None else s
            elif o.key_or_group.split(".")[0] in RUNTIME_KEYS:
                continue  # service settings: taken from the sweep's config, checked in compose_all
            else:
                values.append(o)
        combo = self.combo(tuple(structural))
        sc = None
        if combo.fast:
            try:
                sc = combo.base
                for o in values:
                    sc = _assign(sc, o.key_or_group.split("."), o.value(), o.key_or_group)
            except SlowPath:
                sc = None
        if sc is None:
            self.stats.slow_jobs += 1
            dc = copy.deepcopy(combo.base_dc)
            for o in values:
                try:
                    OmegaConf.update(dc, o.key_or_group, o.value(), merge=True)
                except Exception as e:  # omegaconf's message names the key
                    raise ConfigError(o.key_or_group, o.value(), f"a valid value ({e})") from e
            name = dc.policy.name
            for k in self.swept_knobs:  # a swept knob this job's policy does not read: its preset value
                if k not in POLICY_KNOBS.get(name, (k,)):
                    OmegaConf.update(dc, f"policy.{k}", policy_baseline(name)[k])
            sc = sim.to_sim_config(dc)
        else:
            if self.swept_knobs:
                p = reset_unused_knobs(sc.policy, self.swept_knobs)
                if p is not sc.policy:
                    sc = dataclasses.replace(sc, policy=p)
            validate(sc)
        for o in values:
            v = _get(sc, o.key_or_group.split("."))
            params[o.key_or_group] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
        return Job(idx, tuple(overrides), sc, config_hash(sc, self._memo if combo.fast else None), params)

    def compose_all(self, job_overrides: Sequence[Sequence[str]], initial_idx: int = 0) -> list[Job]:
        # many small objects and no garbage cycles: the cyclic GC would rescan the driver's
        # whole heap (ray, mlflow, sqlalchemy...) over and over while the job list grows
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._compose_all(job_overrides, initial_idx)
        finally:
            if enabled:
                gc.enable()

    def _compose_all(self, job_overrides: Sequence[Sequence[str]], initial_idx: int) -> list[Job]:
        t0 = time.perf_counter()
        # policy knobs swept across policies (policy=none,unmapped_cache policy.max_blocks=16,64): in
        # the jobs of a policy that does not read the knob it keeps its preset value, so those jobs
        # are one config, run once. Set for the whole sweep, such a knob is an error as for `sim`.
        seen: dict[str, set] = {}
        for ovs in job_overrides:
            for s in ovs:
                m = _SIMPLE.match(s)
                if m and m.group(1).startswith("policy.") and m.group(1)[7:] in _KNOB_NAMES:
                    seen.setdefault(m.group(1)[len("policy."):], set()).add(m.group(2))
        self.swept_knobs = set(seen)
        runtime_vals: dict[str, set] = {}
        jobs = []
        for i, ovs in enumerate(job_overrides):
            for s in ovs:
                o = self.parse(s)
                if not self.is_structural(o) and o.key_or_group.split(".")[0] in RUNTIME_KEYS:
                    runtime_vals.setdefault(o.key_or_group, set()).add(s)
            try:
                jobs.append(self.compose_job(initial_idx + i, ovs))
            except ConfigError as e:
                raise ConfigError(e.key, e.value, f"{e.allowed} [job #{initial_idx + i}: {' '.join(ovs)}]") from e
        for k, vals in seen.items():  # a knob none of the sweep's policies reads
            names = sorted({j.sc.policy.name for j in jobs})
            if jobs and not any(k in POLICY_KNOBS.get(n, (k,)) for n in names):
                raise ConfigError(f"policy.{k}", sorted(vals)[0] if len(vals) == 1 else sorted(vals),
                                  f"unset: no policy of this sweep ({', '.join(names)}) uses it "
                                  f"(knobs: {'; '.join(n + ': ' + (', '.join(POLICY_KNOBS.get(n, ())) or 'none') for n in names)})")
        for k, v in runtime_vals.items():
            if len(v) > 1:
                raise ConfigError(k, sorted(v), "one value for the whole sweep (service settings cannot be swept)")
        self.stats.jobs += len(jobs)
        self.stats.total_s += time.perf_counter() - t0
        return jobs
