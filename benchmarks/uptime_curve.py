"""Direct-map splits against uptime, `none` vs `unmapped_cache`: do splits saturate, and how fast?

    .venv/bin/python benchmarks/uptime_curve.py --mem-mib 8192 --days 1 --out docs/uptime_splits.png

Runs `production_busy` on one machine for each policy (the streamed workload keeps memory
flat however long) and plots level-2 and level-3 splits from the time series.
"""
from __future__ import annotations

import argparse
import time

import sim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mem-mib", type=int, default=8192)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--workload", default="production_busy")
    ap.add_argument("--policies", default="none,unmapped_cache")
    ap.add_argument("--out", default="uptime_splits.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    duration = args.days * 86400
    for pol in args.policies.split(","):
        t0 = time.perf_counter()
        r = sim.simulate(sim.load_config([f"machine.mem_mib={args.mem_mib}", "machine.cpus=16", f"workload={args.workload}",
                                          f"workload.duration_s={duration}", f"policy={pol}", "sample_interval_s=60"]))
        ts = r.timeseries
        hours = ts["t_s"] / 3600
        for ax, col in zip(axes, ("direct_map_level2_splits", "direct_map_level3_splits")):
            ax.plot(hours, ts[col], label=pol)
        c = r.counters
        print(f"{pol}: {r.n_events / 1e6:.0f} M events in {time.perf_counter() - t0:.0f} s; level-2 / level-3 splits "
              f"{c['direct_map_level2_splits']:.0f} / {c['direct_map_level3_splits']:.0f}; at 1 h, 6 h, end: "
              + ", ".join(f"{ts.filter(ts['t_s'] <= h * 3600)['direct_map_level2_splits'][-1]:.0f}"
                          for h in (1, 6, args.days * 24)), flush=True)
    for ax, title in zip(axes, ("level-2 splits (2M -> 4K)", "level-3 splits (1G -> 2M)")):
        ax.set_xlabel("uptime, hours")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{args.workload}, {args.mem_mib // 1024} GiB: direct-map splits against uptime")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
