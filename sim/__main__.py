"""`python -m sim [hydra overrides]`: one simulation, as a Hydra app over conf/.

Writes into the run's output folder: timeseries.parquet, counters.json, directmap.png;
prints a summary table of the final counters.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .config import ConfigError
from .hydra_conf import register_configs, to_sim_config
from .paths import conf_dir

SUMMARY_KEYS = [
    "direct_map_level2_splits", "direct_map_level3_splits", "direct_map_level2_collapses",
    "DirectMap4k", "DirectMap2M", "DirectMap1G", "direct_map_pt_pages", "direct_map_np_pages",
    "nr_free_pages", "free_2m_blocks", "alloc_fail", "pgsteal", "fallback_claim", "fallback_steal",
    "pageblocks_polluted", "unmapped_cache_blocks", "unmapped_cache_hits", "unmapped_cache_misses",
    "tlb_flush_kernel_range", "tlb_flush_kernel_pages", "tlb_flush_all",
    "unmapped_cache_held_pages", "unmapped_cache_stranded_pages", "freetype_unmap_conversions",
    "freetype_remap_conversions",
    "events", "events_per_second",
]


def summary_table(counters: dict, keys=SUMMARY_KEYS) -> str:
    rows = [(k, counters[k]) for k in keys if k in counters]
    w = max(len(k) for k, _ in rows)
    fmt = lambda v: f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3f}"  # noqa: E731
    vals = [fmt(v) for _, v in rows]
    vw = max(len(v) for v in vals)
    line = "+" + "-" * (w + 2) + "+" + "-" * (vw + 2) + "+"
    out = [line, f"| {'counter'.ljust(w)} | {'value'.rjust(vw)} |", line]
    out += [f"| {k.ljust(w)} | {v.rjust(vw)} |" for (k, _), v in zip(rows, vals)]
    out.append(line)
    return "\n".join(out)


def run(cfg: DictConfig) -> dict:
    from tqdm import tqdm

    from .picture import save_png
    from .simulate import overlap_default, simulate

    sc = to_sim_config(cfg)  # validate before any work
    from . import memory

    memory.check(sc, *memory.limit_from_env(), overlap=overlap_default())  # refuse a run that cannot fit
    out = Path(HydraConfig.get().runtime.output_dir)
    duration = float(sc.workload.duration_s)
    bar = tqdm(total=duration, unit="s", unit_scale=True, desc="simulated", file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:,.0f}/{total:,.0f} s [{elapsed}<{remaining}]")

    def progress(sim_s, total):
        bar.n = sim_s
        bar.refresh()

    res = simulate(cfg, progress=progress)
    bar.close()
    res.timeseries.write_parquet(out / "timeseries.parquet")
    (out / "counters.json").write_text(json.dumps(res.counters, indent=1, sort_keys=True))
    title = f"{sc.workload.name} / policy {sc.policy.name} / {sc.machine.mem_mib} MiB"
    save_png(res.directmap, out / "directmap.png", title)
    print(summary_table(res.counters))
    print(f"{res.n_events:,} events in {res.wall_s:.2f} s ({res.events_per_second:,.0f} events/s in the loop)")
    print(f"output: {out}")
    return res.counters


register_configs()


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base=None)
def _app(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ConfigError as e:  # caught here: Hydra would print it under its own traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
