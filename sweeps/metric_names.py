"""Counter name -> MLflow metric key: the one place that decides how a run's counters read in
the MLflow UI (both writers, bulk SQL and client/HTTP, and the sweep table use it).

MLflow's UI sorts metric keys by name and shows one chart section per prefix before `/`:

* `0_headline/` (sorts first): the result - splits, DirectMap4k, memory held and stranded by a
  cache, allocation failures, TLB flushes;
* `direct_map/`, `alloc/`, `cache/`, `pageblocks/`: the other final counters by subsystem;
* `order/`: per-order counters (`alloc_fail_order_<k>`, `nr_free_order_<k>`), rarely non-zero;
* `perf/`: simulation speed and wall time (not results);
* `ts/`: the time series, one step per sample, step = simulated time in ms.

Units are in the key where the kernel name does not carry one (`DirectMap4k_kB`, `_MiB`,
`_pages`). `metric_key` derives a counter's prefix and unit from its declaration in
sim/layout.py (kernel name, unit, group); counters derived at read-out (`nr_free_order_<k>`,
`pageblocks_<migratetype>`, watermarks) by their names.
"""
from __future__ import annotations

import re
from functools import lru_cache

HEADLINE = "0_headline/"
TS = "ts/"
PERF = "perf/"
ORDER = "order/"

# counter -> (headline key, scale): the result of a run, in the order the summary prints it
HEADLINE_METRICS: dict[str, tuple[str, float]] = {
    "direct_map_level2_splits": ("direct_map_level2_splits", 1.0),
    "direct_map_level3_splits": ("direct_map_level3_splits", 1.0),
    "DirectMap4k": ("DirectMap4k_kB", 1.0),
    "unmapped_cache_held_pages": ("memory_held_MiB", 4.0 / 1024),  # 4 kB pages -> MiB
    "unmapped_cache_stranded_pages": ("memory_stranded_MiB", 4.0 / 1024),
    "alloc_fail": ("alloc_fail", 1.0),
    "tlb_flush_kernel_range": ("tlb_flush_kernel_range", 1.0),
    "tlb_flush_kernel_pages": ("tlb_flush_kernel_pages", 1.0),
    "tlb_flush_all": ("tlb_flush_all", 1.0),
}

_UNITS = {"DirectMap4k": "kB", "DirectMap2M": "kB", "DirectMap1G": "kB", "min_free_kbytes": "",
          "wall_s": "", "events_per_second": ""}
_PERF = {"events", "events_per_second", "wall_s", "compile_s"}
_ORDER = re.compile(r"_order_\d+$")


# the simulator's counter groups (sim/layout.py COUNTERS) -> metric prefixes; the "headline"
# group's counters get a copy under 0_headline/ and keep their subsystem's prefix below
_GROUP_PREFIX = {"direct_map": "direct_map/", "allocator": "alloc/", "pageblocks": "pageblocks/", "cache": "cache/",
                 "pack": "cache/", "per_order": ORDER, "loop": PERF, "compaction": "compaction/"}


@lru_cache(maxsize=None)
def metric_key(counter: str) -> str:
    """The MLflow key of a final counter (not a headline copy: see `headline`): its group and
    unit as sim/layout.py declares them; counters derived at read-out by their names."""
    from sim.layout import COUNTER_INFO

    if counter in _PERF:
        return PERF + counter
    info = COUNTER_INFO.get(counter)
    unit = "kB" if info is not None and info.unit == "kB" else _UNITS.get(counter)
    name = f"{counter}_{unit}" if unit else counter
    if info is not None and info.group in _GROUP_PREFIX:
        return _GROUP_PREFIX[info.group] + (counter if info.group == "per_order" else name)
    if _ORDER.search(counter):
        return ORDER + counter
    if counter.startswith(("compact_", "thp_", "pgmigrate_", "fragmentation_")):
        return "compaction/" + name
    if counter.startswith(("DirectMap", "direct_map_", "cpa_", "tlb_")):
        return "direct_map/" + name
    if counter.startswith(("unmapped_", "bpf_prog_pack")):
        return "cache/" + name
    if counter.startswith("pageblocks_"):
        return "pageblocks/" + name
    return "alloc/" + name


def headline(counters: dict) -> dict[str, float]:
    """{headline key: value} of the headline counters a run has."""
    return {key: float(counters[c]) * scale for c, (key, scale) in HEADLINE_METRICS.items() if c in counters}


def ts_key(column: str) -> str:
    unit = _UNITS.get(column)
    return TS + (f"{column}_{unit}" if unit else column)


def counter_name(key: str):
    """The counter a final metric key was written for (the inverse of `final_metrics`), or None
    for keys that are not a counter: time series, scaled headline copies, the run's perf/wall_s
    and perf/compile_s."""
    if key.startswith(TS) or key in (PERF + "wall_s", PERF + "compile_s"):
        return None
    if key.startswith(HEADLINE):
        k = key[len(HEADLINE):]
        return next((c for c, (hk, scale) in HEADLINE_METRICS.items() if hk == k and scale == 1.0), None)
    _group, sep, name = key.partition("/")
    if not sep:
        return key
    return next((c for c, unit in _UNITS.items() if unit and name == f"{c}_{unit}"), name)


def final_metrics(counters: dict) -> dict[str, float]:
    """Every final metric of a run: the headline first, then each counter under its group."""
    out = {HEADLINE + k: v for k, v in headline(counters).items()}
    for c, v in counters.items():
        if HEADLINE_METRICS.get(c, ("", 0.0))[1] != 1.0:  # not already a headline as it is
            out[metric_key(c)] = v
    return out
