"""What a sweep's runs are called: the swept keys under short names, and each child run's name
made of its swept values only (`unmapped_cache mb=64 mixed s0`), distinct within the sweep."""
from __future__ import annotations

from typing import Any, Sequence

# always logged as params (short name -> config path): what every run is, swept or not
CONTEXT = {"policy": "policy.name", "workload": "workload.name", "mem_mib": "machine.mem_mib",
           "duration_s": "workload.duration_s", "seed": "seed"}
GROUPS = ("policy", "workload", "machine")  # Hydra config groups: their value is a preset name


def swept_keys(jobs: Sequence) -> list[str]:
    """Override keys whose value differs between jobs (the sweep's axes), in override order."""
    values: dict[str, set] = {}
    for j in jobs:
        for k, v in j.params.items():
            values.setdefault(k, set()).add(str(v))
    return [k for k, v in values.items() if len(v) > 1]


def _get(sc, path: str) -> Any:
    for part in path.split("."):
        sc = getattr(sc, part)
    return sc


def _abbrev(short: str) -> str:
    return "".join(p[0] for p in short.split("_") if p) or short


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    s = str(v)
    return s if len(s) <= 24 else s[:21] + "..."


class RunNames:
    """Short names of a sweep's swept keys and the name of each of its runs."""

    def __init__(self, jobs: Sequence):
        sw = swept_keys(jobs)
        self.swept = sorted(sw, key=lambda k: (k != "policy", k == "seed"))  # policy first, seed last
        self.short: dict[str, str] = {}
        lasts = [k.split(".")[-1] for k in self.swept]
        for k, last in zip(self.swept, lasts):
            path = CONTEXT.get(last)
            group_ok = k in GROUPS and (path is None or path == f"{k}.name")
            clash = lasts.count(last) > 1 or (path is not None and path != k and not group_ok)
            self.short[k] = k if clash else last
        abbrevs = [_abbrev(self.short[k]) for k in self.swept]
        self._abbr = {k: (a if abbrevs.count(a) == 1 else self.short[k]) for k, a in zip(self.swept, abbrevs)}
        by_name: dict[str, set] = {}
        for j in jobs:
            by_name.setdefault(self._name(j), set()).add(j.hash)
        self.names: dict[str, str] = {}
        for n, hashes in by_name.items():  # one name, several configs (a value cut short): + hash
            for h in hashes:
                self.names[h] = n if len(hashes) == 1 else f"{n} {h[:6]}"

    def _name(self, job) -> str:
        parts = [] if "policy" in self.swept else [job.sc.policy.name]
        for k in self.swept:
            if k not in job.params:  # not set for this job (e.g. a knob of another policy)
                continue
            v = job.params[k]
            if k == "seed":
                parts.append(f"s{v}")
            elif k in GROUPS or "." not in k and isinstance(v, str):
                parts.append(_fmt(v))
            else:
                parts.append(f"{self._abbr[k]}={_fmt(v)}")
        return " ".join(parts) or "default"

    def name(self, job) -> str:
        return self.names.get(job.hash) or self._name(job)

    def swept_values(self, job) -> dict[str, str]:
        """{short name: value} of the swept keys (params and tags of the child run)."""
        return {self.short[k]: str(job.params[k]) for k in self.swept if k in job.params}

    def params(self, job) -> dict[str, str]:
        """The child run's params: what the run is (CONTEXT) and the swept keys, short names."""
        out = {s: str(_get(job.sc, p)) for s, p in CONTEXT.items()}
        out.update(self.swept_values(job))
        return out
