"""Long uptimes: peak memory and speed against simulated time (the streamed workload).

Each row runs in its own process (peak RSS is per process), on 64 GiB `production_busy`
unless told otherwise; the minimal buddy allocator (benchmarks/buddy_ref.py) is measured in
the same process right before, as the speed-of-light reference.

    .venv/bin/python benchmarks/bench_uptime.py                       # 600 s, 1 h, 6 h
    .venv/bin/python benchmarks/bench_uptime.py --durations 604800    # 7 days (about 80 min)
    .venv/bin/python benchmarks/bench_uptime.py --machine server1t --workload idle --durations 86400 \
        workload.target_utilisation=0.5                                # bench_sim.py --long's 1 TiB day
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROW = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import buddy_ref
import sim
ref = buddy_ref.events_per_second()
cfg = sim.load_config(sys.argv[3:])
sim.simulate(sim.load_config(["machine=small", "workload.duration_s=1"]))  # compile / load the cache
t0 = time.perf_counter()
r = sim.simulate(cfg)
wall = time.perf_counter() - t0
print(json.dumps({"events": r.n_events, "wall_s": wall, "loop_eps": r.events_per_second,
                  "e2e_eps": r.n_events / wall, "ref_eps": ref,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "l2": r.counters["direct_map_level2_splits"], "l3": r.counters["direct_map_level3_splits"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machine", default="server64g")
    ap.add_argument("--workload", default="production_busy")
    ap.add_argument("--policy", default="none")
    ap.add_argument("--durations", default="600,3600,21600", help="simulated seconds, comma-separated")
    ap.add_argument("overrides", nargs="*", help="more config overrides for every row (key=value)")
    args = ap.parse_args()
    here = Path(__file__).resolve().parent
    print("| simulated | events | peak RSS MB | wall s | loop events/s | end-to-end events/s | "
          "e2e / buddy reference | level-2 / level-3 splits |")
    print("|---|---|---|---|---|---|---|---|")
    for d in args.durations.split(","):
        ov = [f"machine={args.machine}", f"workload={args.workload}", f"policy={args.policy}",
              f"workload.duration_s={d}", *args.overrides]
        out = subprocess.run([sys.executable, "-c", ROW, str(here), "--", *ov], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {float(d):,.0f} s | {r['events'] / 1e6:,.1f} M | {r['peak_rss_mb']:,.0f} | {r['wall_s']:,.1f} | "
              f"{r['loop_eps'] / 1e6:.1f} M | {r['e2e_eps'] / 1e6:.1f} M | {r['e2e_eps'] / r['ref_eps']:.2f} "
              f"(ref {r['ref_eps'] / 1e6:.1f} M) | {r['l2']:.0f} / {r['l3']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
