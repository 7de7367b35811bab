"""Structured configs (dataclasses) for the simulator, and their validation.

Every value is checked by `validate()` before a run starts; a bad value raises
`ConfigError` naming the dotted key and the allowed range.  The same dataclasses are
the Hydra schema (registered in `sim.hydra_conf`), so `python -m sim`, `sim.load_config`
and the step API's `MachineConfig(...)` all share one definition.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .constants import MIGRATE_PCPTYPES, MIGRATETYPE_NAMES
from .layout import ON_ALLOC, ON_FREE, POLICIES

# ---------------------------------------------------------------------------
# ranges: field(metadata=...) -> checked by validate()


def rng(lo, hi, **kw):
    """Metadata for a numeric field allowed in [lo, hi]."""
    return {"range": (lo, hi), **kw}


def choice(*values):
    return {"choices": values}


class ConfigError(ValueError):
    """A config value is out of range. The message names the dotted key."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config key '{key}' = {value!r} is invalid: allowed {allowed}")


# ---------------------------------------------------------------------------
# machine


@dataclass
class MachineConfig:
    """The simulated machine: one zone of RAM mapped by the x86-64 direct map."""

    # the smallest machine that boots: one pageblock (2 MiB) with kernel_image_mib=0; with the
    # kernel image, 2 x (kernel_phys_start_mib + kernel_image_mib) = 96 MiB by default
    mem_mib: int = field(default=16384, metadata=rng(2, 16 * 1024 * 1024))
    direct_gbpages: bool = True
    cpus: int = field(default=4, metadata=rng(1, 1024))
    # per-CPU page lists for order-0 pages (mm/page_alloc.c rmqueue_pcplist/free_unref_page).
    # Off by default for the step API (exact buddy semantics); the conf/machine presets turn it on.
    pcp: bool = False
    pcp_batch: int = field(default=0, metadata=rng(0, 4096))  # 0: zone_batchsize() formula (63 from 1 GiB)
    pcp_high: int = field(default=0, metadata=rng(0, 1 << 30))  # 0: zone_highsize() formula
    # [start_kb, size_kb] ranges; holes are not RAM (not mapped, no struct page in use)
    holes: list[list[int]] = field(default_factory=list)
    # RAM that is mapped but never given to the page allocator (firmware, initrd, ...)
    reserved: list[list[int]] = field(default_factory=list)
    # RAM mapped with 4K PTEs from boot (ISA range, kernel-image alias splits made at boot)
    pte_mapped: list[list[int]] = field(default_factory=list)
    kernel_phys_start_mib: int = field(default=16, metadata=rng(0, 1 << 24))  # CONFIG_PHYSICAL_START
    kernel_image_mib: int = field(default=32, metadata=rng(0, 4096))
    memmap: bool = True  # reserve struct page (64 B per 4K page) at the top of RAM
    min_free_kbytes: int = field(default=0, metadata=rng(0, 1 << 30))  # 0: int_sqrt(16 * lowmem_kB), THP's if larger
    # THP on (Debian's madvise): khugepaged raises min_free_kbytes to 2 + 9 pageblocks per zone
    # (set_recommended_min_free_kbytes: 45056 kB with DMA + DMA32, 67584 kB with NORMAL too)
    transparent_hugepage: bool = True
    watermark_scale_factor: int = field(default=10, metadata=rng(1, 3000))
    alloc_nofragment: bool = True  # ALLOC_NOFRAGMENT first pass; the kernel's only with RAM above 4 GiB (ZONE_NORMAL)
    # a machine saved by sim.save_machine after some uptime: the run continues it (same machine,
    # workload and seed; the policy acts from the snapshot on) up to workload.duration_s
    snapshot: Optional[str] = None
    cpa_collapse: bool = False  # CPA_COLLAPSE for set_memory_rox (collapse_large_pages)
    # compaction and page migration (sim/compaction.py): direct compaction, kcompactd, proactive
    # compaction; off: free memory is only defragmented by frees (the model before compaction)
    compaction: bool = True
    compaction_proactiveness: int = field(default=20, metadata=rng(0, 100))  # vm.compaction_proactiveness
    extfrag_threshold: int = field(default=500, metadata=rng(0, 1000))  # vm.extfrag_threshold
    # what the boot does to the free lists after memblock_free_all (sim/kernel_init.py), drawn
    # from the seed; 0 (the step API's default): the free lists exactly as memblock_free_all leaves them
    boot_kernel_kb: int = field(default=0, metadata=rng(0, 1 << 30))  # kernel allocations during init
    boot_kernel_freed_pct: int = field(default=0, metadata=rng(0, 100))  # of which freed before userspace
    boot_initrd_kb: int = field(default=0, metadata=rng(0, 1 << 22))  # initrd, unpacked to rootfs, then freed
    boot_pagecache_kb: int = field(default=0, metadata=rng(0, 1 << 30))  # early userspace page cache


# ---------------------------------------------------------------------------
# workload

DISTS = ("fixed", "exp", "lognormal", "uniform", "forever", "list")
MAX_LIST_VALUES = 4096  # values of a `list` distribution
CALLER_MIGRATETYPES = MIGRATETYPE_NAMES[:MIGRATE_PCPTYPES]  # unmovable, movable, reclaimable


@dataclass
class Dist:
    """A distribution of a positive quantity. `forever` is +inf (lifetimes only); `list`: a
    caller's k-th object takes values[k % len(values)] (e.g. the sizes of a module list, in
    the order it is loaded)."""

    dist: str = field(default="fixed", metadata=choice(*DISTS))
    value: float = field(default=1.0, metadata=rng(0.0, 1e12))
    mean: float = field(default=1.0, metadata=rng(1e-9, 1e12))
    median: float = field(default=1.0, metadata=rng(1e-9, 1e12))
    sigma: float = field(default=1.0, metadata=rng(0.0, 10.0))
    low: float = field(default=0.0, metadata=rng(0.0, 1e12))
    high: float = field(default=1.0, metadata=rng(0.0, 1e12))
    values: list[float] = field(default_factory=list)


@dataclass
class CallerConfig:
    """One kernel user of the page allocator and its direct-map actions.

    Objects (a vmalloc area, a module, a BPF image, a secretmem file) arrive at
    `rate_per_s`; each is `allocs` (or ceil(size_bytes / (4K << order))) calls of
    alloc_pages(order), the order drawn from `order_mix` (weights of orders 0, 1, 2, ...:
    [0.9, 0, 0.1] is 90% order 0, 10% order 2); all are freed after `lifetime_s`.
    """

    kind: str = "vmalloc"  # label: vmalloc, module, ftrace, kprobe, bpf, secretmem, pks, background
    rate_per_s: float = field(default=0.0, metadata=rng(0.0, 1e9))
    initial: int = field(default=0, metadata=rng(0, 1 << 40))  # objects alive at t=0
    # when set, the `initial` objects arrive at this simulated time (a one-shot event, e.g.
    # an oracle workload) instead of in the fill phase before t = 0; arrivals at rate_per_s
    # still run from t = 0, merged by time with the burst
    at_s: Optional[float] = field(default=None, metadata=rng(0.0, 1e9))
    # the initial objects arrive one after another, this far apart, from at_s (insmod of a
    # module list, one at a time); 0: all at at_s
    at_interval_s: float = field(default=0.0, metadata=rng(0.0, 1e6))
    migratetype: str = field(default="unmovable", metadata=choice(*CALLER_MIGRATETYPES))
    order_mix: list[float] = field(default_factory=lambda: [1.0])  # weight of order 0, 1, 2, ...
    allocs: Dist = field(default_factory=Dist)
    size_bytes: Optional[Dist] = None
    lifetime_s: Dist = field(default_factory=lambda: Dist(dist="exp", mean=60.0))
    on_alloc: str = field(default="none", metadata=choice(*ON_ALLOC))
    on_alloc_fraction: float = field(default=1.0, metadata=rng(0.0, 1.0))
    on_free: str = field(default="none", metadata=choice(*ON_FREE))
    # load_module's copy of the image (copy_module_from_user / kernel_read_file: a vmalloc'd
    # buffer of the .ko file, about twice the module's core): order-0 pages for load_copy x
    # the object's size, allocated right before the object's pages and freed right after
    # them (free_copy), unmovable (GFP_KERNEL), with no direct-map action; 0: none
    load_copy: float = field(default=0.0, metadata=rng(0.0, 100.0))
    unmapped: bool = False  # __GFP_UNMAPPED user: goes through the policy (issue: caches)
    # background memory: `share` of target_utilisation x managed pages, filled at t=0 and
    # kept in steady state (arrival rate = population / mean lifetime); may be reclaimed.
    background: bool = False
    share: float = field(default=0.0, metadata=rng(0.0, 1.0))
    reclaimable: bool = False  # kswapd may free it early (page cache, slab)
    # when in the fill phase (t in [-1, 0)) its population arrives, as fractions of that
    # phase: [0, 0.1] fills before everything else (the kernel's own boot-time memory),
    # [0, 1] interleaves with the other callers
    fill_from: float = field(default=0.0, metadata=rng(0.0, 1.0))
    fill_to: float = field(default=1.0, metadata=rng(0.0, 1.0))


def copy_rows(wl: "WorkloadConfig") -> list[int]:
    """The callers with a load copy: each gets one more row of the callers' table, after all
    the callers, in this order (workload.callers_table: a plain caller with no objects of its
    own, unmovable as __vmalloc(len, GFP_KERNEL) is, no direct-map action, never served by a
    policy)."""
    return [ci for ci, c in enumerate(wl.callers.values()) if c.load_copy > 0]


@dataclass
class WorkloadConfig:
    name: str = "mixed"
    duration_s: float = field(default=600.0, metadata=rng(0.0, 1e9))
    target_utilisation: float = field(default=0.8, metadata=rng(0.0, 0.99))
    # name -> caller; add one from the command line with ++workload.callers={NAME: {...}}
    callers: dict[str, CallerConfig] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# policy (how __GFP_UNMAPPED users get their pages)

SHRINKER_KNOBS = ("shrink_below_high_wmark_pct", "shrink_above_free_pages", "shrink_interval_ms", "shrink_on_reclaim",
                  "keep_free_pages", "batch_pages")
# The PolicyConfig knobs each policy reads (sim/policy.py, sim/cache.py). A knob a policy does not
# read must keep the value of conf/policy/<name>.yaml (or PolicyConfig's default): setting it is an
# error that lists the policy's knobs. A new policy is one line here (plus its code and yaml).
POLICY_KNOBS: dict[str, tuple[str, ...]] = {
    "none": (),
    "unmapped_cache": ("max_blocks", "release", "capture_pte_mapped_frees", "refill_lower_orders", "collapse",
                       *SHRINKER_KNOBS),
    "migratetype": ("collapse", *(k for k in SHRINKER_KNOBS if k != "keep_free_pages")),
    "grouped_pages": ("max_blocks", "release", "collapse", *SHRINKER_KNOBS),
    "prog_pack": ("max_blocks", "collapse", *SHRINKER_KNOBS),
    "execmem_rox": ("max_blocks", "collapse", *SHRINKER_KNOBS),
    "freetype": ("version",),  # ALLOC_UNMAPPED: no cache, no shrinker, never collapsed
}
assert set(POLICY_KNOBS) == set(POLICIES), "POLICY_KNOBS must list every policy of layout.POLICIES"


@dataclass
class PolicyConfig:
    """How __GFP_UNMAPPED users (callers with `unmapped: true`) get their pages.

    none: today's kernel, each caller changes its own pages' direct map.
    unmapped_cache: the 2023 unmapped_alloc() RFC, a cache of 2M blocks with a buddy
      allocator and a shrinker; migratetype: the 2022 MIGRATE_UNMAPPED pageblock type;
    grouped_pages: order-9 blocks split into a list of 4K pages (PKS page tables);
    prog_pack / execmem_rox: per-user 2M ROX packs for code (BPF / all code users);
    freetype: the 2026 ALLOC_UNMAPPED series (unmapped memory as a page-allocator freetype).
    """

    name: str = field(default="none", metadata=choice(*POLICIES))
    max_blocks: int = field(default=0, metadata=rng(0, 1 << 24))  # cache size limit in 2M blocks (0: none)
    release: str = field(default="2m", metadata=choice("2m", "4k"))  # shrinker release granularity
    capture_pte_mapped_frees: bool = False  # frees of already PTE-mapped pages go into the cache
    refill_lower_orders: bool = True  # on a miss, fall back to orders below 9 (the 2023 RFC)
    collapse: bool = False  # collapse restored regions back to large pages
    # shrinker: when it runs
    shrink_below_high_wmark_pct: float = field(default=0.0, metadata=rng(0.0, 10000.0))  # NR_FREE < pct% of high wmark
    shrink_above_free_pages: int = field(default=0, metadata=rng(0, 1 << 40))  # cache free pages above this
    shrink_interval_ms: float = field(default=0.0, metadata=rng(0.0, 1e9))  # every N simulated ms
    shrink_on_reclaim: bool = True  # run from reclaim (kswapd) like a registered shrinker
    # shrinker: how much it keeps / releases
    keep_free_pages: int = field(default=0, metadata=rng(0, 1 << 40))  # low threshold
    batch_pages: int = field(default=0, metadata=rng(0, 1 << 40))  # per run at most (0: no limit)
    # freetype: the ALLOC_UNMAPPED series version modelled (4: unmapped allocations always
    # direct-compact before they fail; 3: they compact only as other allocations do)
    version: int = field(default=4, metadata=choice(3, 4))


# ---------------------------------------------------------------------------
# root


@dataclass
class SimConfig:
    machine: MachineConfig = field(default_factory=MachineConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    seed: int = field(default=0, metadata=rng(0, 2**63 - 1))
    # time series: one row per sample_interval_s of simulated time; when max_samples rows are
    # full, every other row is dropped and the interval doubles (bounded, duration-independent)
    sample_interval_s: float = field(default=1.0, metadata=rng(1e-6, 1e9))
    max_samples: int = field(default=4096, metadata=rng(2, 1 << 24))
    # how the run is carried out, not what it computes (not part of a sweep run's identity):
    # events are generated window_s of simulated time at a time (results do not depend on it)
    window_s: float = field(default=60.0, metadata=rng(1e-3, 1e7, runtime=True))
    # a checkpoint every checkpoint_every_s of simulated time to checkpoint_path; a run started
    # with the same config and path resumes from it
    checkpoint_path: Optional[str] = field(default=None, metadata={"runtime": True})
    checkpoint_every_s: float = field(default=3600.0, metadata=rng(1.0, 1e9, runtime=True))


# ---------------------------------------------------------------------------
# validation


def _check_field(key: str, value: Any, meta) -> None:
    if value is None:  # Optional fields
        return
    if "range" in meta:
        lo, hi = meta["range"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(key, value, f"a number in [{lo}, {hi}]")
        if not lo <= value <= hi:
            raise ConfigError(key, value, f"[{lo}, {hi}]")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(key, value, "one of " + ", ".join(map(str, meta["choices"])))


def _validate_dataclass(obj: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        _check_field(key, value, f.metadata)
        if dataclasses.is_dataclass(value):
            _validate_dataclass(value, key + ".")


def _validate_ranges(key: str, ranges, mem_kb: int) -> None:
    for i, r in enumerate(ranges):
        if len(r) != 2:
            raise ConfigError(f"{key}[{i}]", list(r), "[start_kb, size_kb]")
        start, size = int(r[0]), int(r[1])
        if start < 0 or size <= 0 or start % 4 or size % 4 or start + size > mem_kb:
            raise ConfigError(f"{key}[{i}]", list(r),
                              f"4 kB-aligned [start_kb, size_kb] with size > 0 inside [0, {mem_kb}] kB")


def validate_machine(m: MachineConfig, prefix: str = "machine.") -> MachineConfig:
    lo, hi = MachineConfig.__dataclass_fields__["mem_mib"].metadata["range"]
    kernel_end = m.kernel_phys_start_mib + m.kernel_image_mib
    if isinstance(m.mem_mib, int) and not isinstance(m.mem_mib, bool) and isinstance(kernel_end, int) \
            and 2 * kernel_end > lo and lo <= m.mem_mib < 2 * kernel_end:
        raise ConfigError(prefix + "mem_mib", m.mem_mib,
                          f"[{2 * kernel_end}, {hi}] (at least twice kernel_phys_start_mib + kernel_image_mib "
                          f"= {kernel_end} MiB: the kernel image sits in the lower half)")
    _validate_dataclass(m, prefix)
    mem_kb = m.mem_mib * 1024
    for name in ("holes", "reserved", "pte_mapped"):
        _validate_ranges(prefix + name, getattr(m, name), mem_kb)
    if kernel_end > m.mem_mib // 2:
        raise ConfigError(prefix + "kernel_image_mib", m.kernel_image_mib,
                          f"kernel_phys_start_mib + kernel_image_mib <= mem_mib/2 = {m.mem_mib // 2}")
    return m


def validate_caller(c: CallerConfig, key: str) -> None:
    _validate_dataclass(c, key + ".")
    if not 1 <= len(c.order_mix) <= 11:
        raise ConfigError(key + ".order_mix", list(c.order_mix),
                          "a list of 1..11 weights, one per order 0..10 (MAX_PAGE_ORDER)")
    for order, w in enumerate(c.order_mix):
        if not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"{key}.order_mix[{order}]", w, "a weight >= 0")
    if sum(c.order_mix) <= 0:
        raise ConfigError(key + ".order_mix", c.order_mix, "weights with a positive sum")
    for dname in ("allocs", "size_bytes", "lifetime_s"):
        d = getattr(c, dname)
        if d is None:
            continue
        if d.dist == "forever" and dname != "lifetime_s":
            raise ConfigError(f"{key}.{dname}.dist", d.dist, "one of fixed, exp, lognormal, uniform, list")
        if d.dist == "uniform" and d.high < d.low:
            raise ConfigError(f"{key}.{dname}.high", d.high, f">= low ({d.low})")
        if d.dist == "fixed" and dname == "allocs" and d.value < 1:
            raise ConfigError(f"{key}.{dname}.value", d.value, ">= 1 allocation per object")
        if d.dist != "list" and d.values:
            raise ConfigError(f"{key}.{dname}.values", list(d.values), "unset unless dist: list")
        if d.dist == "list":
            if not 1 <= len(d.values) <= MAX_LIST_VALUES:
                raise ConfigError(f"{key}.{dname}.values", list(d.values),
                                  f"a list of 1..{MAX_LIST_VALUES} values (dist: list)")
            lo, allowed = (1, "[1, 1e12]") if dname == "allocs" else (0, "(0, 1e12]")  # allocs: as `fixed`
            for i, v in enumerate(d.values):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= 1e12 and v > 0):
                    raise ConfigError(f"{key}.{dname}.values[{i}]", v, "a number in " + allowed)
    if c.background and c.share <= 0:
        raise ConfigError(key + ".share", c.share, "(0, 1] for a background caller")
    if c.at_interval_s and (c.at_s is None or c.background):
        raise ConfigError(key + ".at_interval_s", c.at_interval_s,
                          "0 unless at_s is set on a caller that is not background (it spaces the burst at at_s)")
    if c.fill_to < c.fill_from:
        raise ConfigError(key + ".fill_to", c.fill_to, f"[{c.fill_from} (fill_from), 1]")


@functools.lru_cache(maxsize=None)
def policy_baseline(name: str) -> dict[str, Any]:
    """The knob values of policy `name` as composed from its preset (conf/policy/<name>.yaml)."""
    from .paths import conf_dir

    out = {f.name: getattr(PolicyConfig(), f.name) for f in dataclasses.fields(PolicyConfig)}
    path = conf_dir() / "policy" / f"{name}.yaml"
    if path.is_file():
        import yaml

        out.update({k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k in out})
    return out


def unused_knobs(p: PolicyConfig) -> list[str]:
    """Knobs set (away from both the policy's preset and PolicyConfig's default) that policy
    `p.name` does not read."""
    if p.name not in POLICY_KNOBS:
        return []
    base, dflt, used = policy_baseline(p.name), policy_baseline(""), POLICY_KNOBS[p.name]
    return [k for k in base if k != "name" and k not in used and getattr(p, k) not in (base[k], dflt[k])]


def reset_unused_knobs(p: PolicyConfig, keys=None) -> PolicyConfig:
    """`p` with the knobs its policy does not read (of `keys`, or all) back at the preset's values."""
    bad = [k for k in unused_knobs(p) if keys is None or k in keys]
    if not bad:
        return p
    base = policy_baseline(p.name)
    return dataclasses.replace(p, **{k: type(getattr(p, k))(base[k]) for k in bad})


def validate_policy(p: PolicyConfig, prefix: str = "policy.") -> PolicyConfig:
    _validate_dataclass(p, prefix)
    bad = unused_knobs(p)
    if bad:
        knobs = ", ".join(POLICY_KNOBS[p.name]) or "none"
        raise ConfigError(prefix + bad[0], getattr(p, bad[0]),
                          f"unset: policy {p.name} does not use it (its knobs: {knobs})")
    if p.name == "grouped_pages" and p.release != "4k":
        raise ConfigError(prefix + "release", p.release, "4k for grouped_pages (it frees single 4K pages)")
    return p


def validate(cfg: SimConfig) -> SimConfig:
    """Check every value of a resolved config; raise ConfigError naming the first bad key."""
    validate_machine(cfg.machine)
    validate_policy(cfg.policy)
    _validate_dataclass(cfg.workload, "workload.")
    for name, c in cfg.workload.callers.items():
        validate_caller(c, f"workload.callers.{name}")
    total_share = sum(c.share for c in cfg.workload.callers.values() if c.background)
    if total_share > 1.0 + 1e-9:
        raise ConfigError("workload.callers.*.share", round(total_share, 6),
                          "background shares summing to at most 1.0")
    for f in dataclasses.fields(cfg):
        if not dataclasses.is_dataclass(getattr(cfg, f.name)):
            _check_field(f.name, getattr(cfg, f.name), f.metadata)
    if len(cfg.workload.callers) + len(copy_rows(cfg.workload)) > 250:
        raise ConfigError("workload.callers", len(cfg.workload.callers),
                          "at most 250 callers, one with load_copy counting twice (its copies are a caller's row)")
    return cfg
