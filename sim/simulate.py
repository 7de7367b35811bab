"""simulate(cfg) -> SimResult: config -> boot -> events -> compiled loop -> counters."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import polars as pl

from .boot import boot
from .freetype import freetype_state
from .engine import N_SAMPLE_COLS, new_alloc_state, run_events, sample_until
from .hydra_conf import to_sim_config
from .metrics import counters
from .picture import region_codes
from .policy import policy_params, served_callers
from .prog_pack import pack_state
from .result import SimResult
from .workload import generate
from .layout import (
    COUNTER_NAMES,
    N_COUNTERS, P_MANAGED,
)

CHUNK_EVENTS = 1 << 20  # events per call of the compiled loop (progress granularity)


def timeseries_frame(samples: np.ndarray) -> pl.DataFrame:
    cols = {"t_s": samples[:, N_COUNTERS + 1] / 1e6}
    for name, i, scale in COUNTER_NAMES:
        cols[name] = samples[:, i] * scale
    cols["free_2m_blocks"] = samples[:, N_COUNTERS]
    return pl.DataFrame(cols)


def derived(c: dict) -> dict:
    mapped = c["DirectMap4k"] + c["DirectMap2M"] + c["DirectMap1G"]
    out = {}
    if mapped:
        # TLB-reach proxy: the share of the direct map still covered by large pages
        out["direct_map_large_fraction"] = (c["DirectMap2M"] + c["DirectMap1G"]) / mapped
        out["direct_map_4k_fraction"] = c["DirectMap4k"] / mapped
    return out


def simulate(cfg, progress: Optional[Callable[[int, int], None]] = None) -> SimResult:
    """Run one simulation. `cfg`: a DictConfig from load_config(), a dict or a SimConfig.
    `progress(done_events, total_events)` is called between chunks of the loop."""
    sc = to_sim_config(cfg)
    t0 = time.perf_counter()
    s = boot(sc.machine)
    policy_params(s, sc.policy)
    s = freetype_state(pack_state(s, sc.policy.name), sc.policy.name)
    es = generate(sc.workload, int(s.par[P_MANAGED]), sc.machine.cpus, sc.seed)
    c_served = served_callers(sc)
    a_pfn = new_alloc_state(es.n_allocs)
    duration = float(sc.workload.duration_s)
    dt = max(sc.sample_interval_s, duration / max(sc.max_samples - 1, 1))
    samples = np.zeros((int(duration / dt) + 2, N_SAMPLE_COLS), np.int64)
    rc = np.zeros(1, np.int64)
    t_next, k = 0.0, 0
    n = es.n_events
    loop_t0 = time.perf_counter()
    for start in range(0, n, CHUNK_EVENTS):
        stop = min(n, start + CHUNK_EVENTS)
        t_next, k = run_events(s, es.ev_time, es.ev_code, es.ev_info, es.a_info, a_pfn, es.c_mt,
                               es.c_on_alloc, es.c_on_free, c_served, rc, samples, dt, start, stop, t_next, k)
        if progress:
            progress(stop, n)
    loop_wall = time.perf_counter() - loop_t0
    t_next, k = sample_until(s, samples, k, t_next, dt, duration)
    final = {key: float(v) for key, v in counters(s).items()}
    final.update(derived(final))
    eps = n / loop_wall if loop_wall > 0 else 0.0
    final["events_per_second"] = eps
    return SimResult(
        config=dataclasses.asdict(sc),  # what OmegaConf.to_container(structured(sc)) gives, 50x faster
        counters=final,
        timeseries=timeseries_frame(samples[:k]),
        events_per_second=eps,
        wall_s=time.perf_counter() - t0,
        directmap=region_codes(s),
        n_events=n,
    )
