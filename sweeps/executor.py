"""Run jobs in chunks as Ray tasks under a bounded in-flight window (ray.wait), handing each
finished chunk to a callback while the remaining tasks compute (recording overlaps compute)."""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)


@dataclass
class ExecStats:
    tasks: int = 0
    lost_chunks: int = 0
    wall_s: float = 0.0
    callback_s: float = 0.0  # driver time in the callback (recording)
    callback_overlapped_s: float = 0.0  # of which tasks were still computing
    submit_s: float = 0.0


def start_ray(ray_conf) -> bool:
    """Connect to a cluster (ray.address= / $RAY_ADDRESS) or start a local instance.
    Returns True if this call started (and so should stop) Ray."""
    import ray

    if ray.is_initialized():
        return False
    from .signals import kept_through_ray_init

    address = ray_conf.address or os.environ.get("RAY_ADDRESS")
    with kept_through_ray_init():
        if address:
            kw = {"runtime_env": dict(ray_conf.runtime_env)} if ray_conf.runtime_env else {}
            ray.init(address=address, log_to_driver=True, **kw)
        else:
            ray.init(num_cpus=ray_conf.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=True)
    return True


def check_fits(chunks) -> None:
    """Every task's memory request fits on some node (else Ray would wait for one forever)."""
    import ray

    from sim.config import ConfigError
    from sim.memory import fmt_bytes

    largest = max((n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    for ch in chunks:
        for j in ch:
            if largest and getattr(j, "mem", 0) > largest:
                raise ConfigError("sweep (run memory)", fmt_bytes(j.mem),
                                  f"at most the largest Ray node's memory resource, {fmt_bytes(largest)} "
                                  f"[job #{j.idx}: {' '.join(j.overrides)}]")


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def plan(n_jobs: int, cpus: int, chunk_size: int, max_in_flight: int) -> tuple[int, int]:
    window = max_in_flight or 2 * cpus
    if chunk_size <= 0:
        # enough chunks to keep every CPU busy twice over, at most 32 runs per task
        chunk_size = max(1, min(32, math.ceil(n_jobs / (2 * window))))
    return chunk_size, window


def execute(jobs: Sequence, ray_conf, opts: dict, on_chunk: Callable[[list, list], None],
            chunk_size: int = 0, max_in_flight: int = 0, progress: Optional[Callable] = None,
            check: Callable[[], None] = lambda: None) -> ExecStats:
    """Run `jobs` (each with .hash and .sc); `on_chunk(jobs, results)` is called in the driver
    for every finished chunk. A chunk whose task fails after Ray's retries (worker lost,
    out of memory...) is reported as failed runs."""
    import ray

    from .tasks import remote_run_chunk

    st = ExecStats()
    t0 = time.perf_counter()
    cs, window = plan(len(jobs), cluster_cpus(), chunk_size, max_in_flight)
    chunks = [list(jobs[i:i + cs]) for i in range(0, len(jobs), cs)]
    fn = remote_run_chunk(ray_conf.max_retries)
    check_fits(chunks)
    opts_ref = ray.put(opts)
    pending: dict = {}
    nxt = 0

    def fill():
        nonlocal nxt
        ts = time.perf_counter()
        while nxt < len(chunks) and len(pending) < window:
            ch = chunks[nxt]
            need = max((getattr(j, "mem", 0) for j in ch), default=0)  # a task runs its chunk's runs one by one
            f = remote_run_chunk(ray_conf.max_retries, need) if need > 0 else fn
            pending[f.remote([(j.hash, j.sc) for j in ch], opts_ref)] = ch
            nxt += 1
            st.tasks += 1
        st.submit_s += time.perf_counter() - ts

    try:
        _loop(pending, fill, on_chunk, st, check)
    except BaseException:  # interrupted (SIGTERM / SIGINT) or the recording failed: stop the tasks
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise
    st.wall_s = time.perf_counter() - t0
    return st


def _loop(pending: dict, fill, on_chunk, st: ExecStats, check) -> None:
    import ray
    from ray.exceptions import RayError

    fill()
    while pending:
        check()  # a signal noted by the driver's handler ends the loop here
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            ch = pending.pop(ref)
            try:
                results = ray.get(ref)
            except RayError as e:  # the task itself failed after its retries
                st.lost_chunks += 1
                err = f"{type(e).__name__}: {str(e)[-2000:]}"
                results = [{"hash": j.hash, "ok": False, "error": err, "counters": {}, "series": {},
                            "wall_s": 0.0} for j in ch]
            fill()  # keep the cluster busy before recording
            tc = time.perf_counter()
            busy = bool(pending)
            on_chunk(ch, results)
            dt = time.perf_counter() - tc
            st.callback_s += dt
            if busy:
                st.callback_overlapped_s += dt
