"""Simulator speed: events per second, bytes of state per simulated 4K page, cost vs events.

    .venv/bin/python benchmarks/bench_sim.py            # 64 GiB default workload + 1 TiB run
    .venv/bin/python benchmarks/bench_sim.py --quick    # smaller, for a smoke check

Prints one table; numbers go into the README. The first run compiles (numba caches it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import sim
from sim.boot import boot
from sim.hydra_conf import to_sim_config
from sim.state import state_nbytes


sys.path.insert(0, str(Path(__file__).resolve().parent))
import buddy_ref  # noqa: E402  (the speed-of-light reference, measured in this process)

REF = {}


def run(label: str, overrides: list[str], repeat: int) -> dict:
    """The run `repeat` times (deterministic: same counters each time); the loop rate as
    the median, with the range (this shared machine varies by +-15 % run to run)."""
    cfg = sim.load_config(overrides)
    rates, walls = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = sim.simulate(cfg)
        walls.append(time.perf_counter() - t0)
        rates.append(r.events_per_second)
    mc = to_sim_config(cfg).machine
    s = boot(mc)
    pages = mc.mem_mib * 256
    wall = statistics.median(walls)
    return {
        "run": label,
        "events": r.n_events,
        "loop events/s (median)": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "wall s": wall,
        "events/s incl. boot+workload": r.n_events / wall,
        "e2e / buddy ref": r.n_events / wall / REF["eps"],
        "state bytes/page": state_nbytes(s) / pages,
        "l2 splits": r.counters["direct_map_level2_splits"],
        "compact_stall": r.counters.get("compact_stall", 0),
        "pgmigrate_success": r.counters.get("pgmigrate_success", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--policies", default="none,unmapped_cache,migratetype,grouped_pages,prog_pack,execmem_rox",
                    help="comma-separated policy names, one row each")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each row (median loop rate)")
    ap.add_argument("--long", action="store_true", help="add a 1 TiB, 1-day row (about an hour)")
    ap.add_argument("--compaction", choices=("on", "both"), default="on",
                    help="both: each policy row also with machine.compaction=false (same process)")
    ap.add_argument("--no-extra", action="store_true", help="only the policy rows (no 2x duration / 1 TiB rows)")
    args = ap.parse_args()
    REF["eps"] = buddy_ref.events_per_second()
    print(f"buddy allocator reference (benchmarks/buddy_ref.py): {REF['eps'] / 1e6:.1f} M events/s")
    sim.simulate(sim.load_config(["machine=small", "workload.duration_s=1"]))  # compile / load cache
    rows = []
    big = "machine.mem_mib=16384" if args.quick else "machine.mem_mib=65536"
    for pol in args.policies.split(","):
        label = f"64 GiB mixed 600 s, policy={pol}" if not args.quick else f"16 GiB mixed, policy={pol}"
        over = [big, "machine.cpus=16", "workload=mixed", f"policy={pol}"]
        rows.append(run(label, over, args.repeat))
        if args.compaction == "both":
            rows.append(run(label + ", compaction off", over + ["machine.compaction=false"], args.repeat))
    if not args.no_extra:
        rows += extra_rows(big, args)
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(f"{r[k]:,.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys))


def extra_rows(big: str, args) -> list[dict]:
    rows = []
    # cost linear in events: the same machine, twice the simulated time
    rows.append(run("same, 2x duration", [big, "machine.cpus=16", "workload=mixed", "workload.duration_s=1200"], args.repeat))
    if not args.quick:
        rows.append(run("1 TiB idle 60 s", ["machine=server1t", "workload=idle", "workload.duration_s=60",
                                            "workload.target_utilisation=0.5"], args.repeat))
    if args.long:
        rows.append(run("1 TiB idle 1 day", ["machine=server1t", "workload=idle", "workload.duration_s=86400",
                                             "workload.target_utilisation=0.5"], 1))
    return rows


if __name__ == "__main__":
    main()
