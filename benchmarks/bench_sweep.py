"""Sweep driver benchmark: 1,000 tiny runs on a local Ray instance, recorded in a fresh sqlite
MLflow store.

Reports the driver's time per run (compose + validate + hash, submit, ledger and bookkeeping;
MLflow excluded, then MLflow alone), the runs recorded per second by the MLflow writer, and
how much of the recording overlapped computation. Targets (issue 4): <= 2 ms of driver time
per run excluding MLflow, >= 100 runs/s recorded, recording overlapped with compute.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 1000] [--cpus 2] [--client-runs 20]
"""
from __future__ import annotations

import argparse
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--client-runs", type=int, default=20, help="runs recorded with the per-run MlflowClient path")
    a = ap.parse_args()

    import ray
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import sim
    from sim.paths import conf_dir
    from sweeps import service
    from sweeps.compose import Composer
    from sweeps.schema import register

    tiny = ["machine=small", "workload=idle", "workload.duration_s=1"]
    sim.simulate(sim.load_config(tiny))  # numba cache warm before workers start
    GlobalHydra.instance().clear()
    register()
    policies = ["none", "unmapped_cache"]
    seeds = range(a.runs // len(policies))
    jobs = [tiny + [f"policy={p}", f"seed={s}"] for p, s in itertools.product(policies, seeds)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    rt = [f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"tracking.artifact_root={tmp / 'art'}",
          f"sweep.ledger_dir={tmp / 'ledger'}", f"sweep.out_dir={tmp / 'out'}", "tracking.picture=false",
          "sweep.progress=false", "sweep.name=bench"]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        master = compose("sweeps", overrides=rt, return_hydra_config=True)

        # 1. composition alone (Hydra once per policy, then the per-job fast path)
        c = Composer(loader, master)
        c.compose_all(jobs)
        st = c.stats
        per_job_fast = 1e3 * (st.total_s - st.hydra_s) / st.jobs
        print(f"compose+validate+hash: {st.jobs} jobs in {st.total_s * 1e3:.0f} ms: {st.combos} Hydra "
              f"compositions {st.hydra_s * 1e3:.0f} ms, per job {per_job_fast:.3f} ms "
              f"(incl. Hydra: {st.per_job_ms():.3f} ms)")

        # 2. the whole sweep on a local Ray instance
        ray.init(num_cpus=a.cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
        t0 = time.perf_counter()
        S = service.run_sweep(loader, master, jobs, 0, out=io.StringIO())
        wall = time.perf_counter() - t0
        ex = S.exec_stats
        n = S.done + S.failed
        submit = 1e3 * ex.submit_s / n
        bookkeeping = 1e3 * (S.record_s - S.mlflow_s) / n
        compose_ms = S.compose.per_job_ms()
        driver = compose_ms + submit + bookkeeping
        print(f"sweep: {n} runs ({S.failed} failed) in {wall:.1f} s on {a.cpus} CPUs, {ex.tasks} Ray tasks")
        print(f"driver time per run excluding MLflow: {driver:.3f} ms  (compose {compose_ms:.3f} incl. "
              f"{S.compose.combos} Hydra compositions, submit {submit:.3f}, ledger+bookkeeping {bookkeeping:.3f})"
              f"  target <= 2 ms: {'OK' if driver <= 2 else 'MISSED'}")
        rps = n / S.mlflow_s
        print(f"MLflow during the sweep (bulk, sqlite, sharing the CPUs with {a.cpus} Ray workers): "
              f"{1e3 * S.mlflow_s / n:.2f} ms per run = {rps:.0f} runs recorded/s")
        ov = ex.callback_overlapped_s / ex.callback_s if ex.callback_s else 0.0
        print(f"recording overlapped with compute: {100 * ov:.0f}% of {ex.callback_s:.2f} s recording time "
              f"(tasks still running while the driver recorded); driver busy {100 * (ex.callback_s + ex.submit_s) / wall:.0f}% of wall")

        # 3. the MLflow writer alone (no Ray workers competing for the 2 CPUs): real results of
        #    tiny runs, recorded in chunks of 32 into a fresh store, as the driver does
        from sweeps.tasks import run_one
        from sweeps.tracking import Tracker

        sample = [run_one(j.hash, j.sc, {"timeseries_steps": 50, "picture": False,
                                         "timeseries_metrics": list(master.tracking.timeseries_metrics)})
                  for j in c.compose_all(jobs[:20])]
        tr = Tracker(f"sqlite:///{tmp / 'mlflow-writer.db'}", "bench", (tmp / "art-writer").as_uri())
        js = Composer(loader, master).compose_all(jobs)
        tr.set_sweep(js)  # run names from the swept keys, as the driver does
        t0 = time.perf_counter()
        for i in range(0, len(js), 32):
            tr.record("parent", "bench", [(j, dict(sample[k % len(sample)], hash=j.hash))
                                          for k, j in enumerate(js[i:i + 32], i)])
        dt = time.perf_counter() - t0
        print(f"MLflow writer alone (bulk, sqlite, chunks of 32): {1e3 * dt / len(js):.2f} ms per run = "
              f"{len(js) / dt:.0f} runs recorded/s  target >= 100: {'OK' if len(js) / dt >= 100 else 'MISSED'}")

        # 4. for comparison: the per-run MlflowClient path (create_run / log_batch / set_terminated)
        if a.client_runs:
            m2 = compose("sweeps", overrides=rt + ["tracking.mode=client", "sweep.name=bench-client",
                                                   f"sweep.ledger_dir={tmp / 'ledger2'}"], return_hydra_config=True)
            S2 = service.run_sweep(loader, m2, [tiny + ["policy=none", f"seed={10_000 + s}"]
                                                for s in range(a.client_runs)], 0, out=io.StringIO())
            n2 = S2.done + S2.failed
            print(f"MLflow (client log_batch path, sqlite): {1e3 * S2.mlflow_s / n2:.1f} ms per run = "
                  f"{n2 / S2.mlflow_s:.1f} runs/s")
        ray.shutdown()
    print(f"store: {tmp}")


if __name__ == "__main__":
    main()
