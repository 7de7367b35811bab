"""simulate(cfg) -> SimResult: config -> boot -> windows of events -> compiled loop -> counters.

The workload is generated one window of simulated time at a time (stream.py), so memory is
the machine's state plus the live objects plus one window, whatever `duration_s` is. A run
can be checkpointed (`checkpoint_path`, every `checkpoint_every_s` of simulated time) and
resumed from it; `save_machine` keeps a whole aged machine that later runs start from
(`machine.snapshot`).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import numpy as np

from . import checkpoint
from .boot import boot
from .engine import N_SAMPLE_COLS, run_events, sample_until
from .freetype import freetype_state
from .hydra_conf import to_sim_config
from .jitcache import usable_cpus
from .layout import P_MANAGED
from .metrics import counters
from .picture import region_codes
from .policy import policy_params, served_callers
from .prog_pack import pack_state
from .result import SimResult
from .workload import Stream

CHUNK_EVENTS = 1 << 20  # events per call of the compiled loop (progress granularity)


def derived(c: dict) -> dict:
    mapped = c["DirectMap4k"] + c["DirectMap2M"] + c["DirectMap1G"]
    out = {}
    if mapped:
        # TLB-reach proxy: the share of the direct map still covered by large pages
        out["direct_map_large_fraction"] = (c["DirectMap2M"] + c["DirectMap1G"]) / mapped
        out["direct_map_4k_fraction"] = c["DirectMap4k"] / mapped
    return out


class Run:
    """One simulation in progress: the machine's state, the workload stream, the samples
    (at sample_interval_s; when max_samples rows are full, every other row is dropped and the
    interval doubles, so the series stays bounded and does not depend on duration_s)."""

    def __init__(self, sc):
        self.sc = sc
        s = boot(sc.machine, sc.seed)
        s = freetype_state(pack_state(s, sc.policy.name), sc.policy.name)
        policy_params(s, sc.policy)
        self.s = s
        self.stream = Stream(sc.workload, int(s.par[P_MANAGED]), sc.machine.cpus, sc.seed, sc.window_s)
        self.c_served = served_callers(sc)
        self.samples = np.zeros((sc.max_samples - sc.max_samples % 2, N_SAMPLE_COLS), np.int64)
        self.clock = np.array([0.0, float(sc.sample_interval_s)])  # next sample time, interval
        self.k = 0  # samples taken
        self.events = 0
        self.loop_s = 0.0
        self._t = self.stream.time_reached
        self.ahead = None  # the next window, built while this one ran (step(overlap=True))

    @property
    def t(self) -> float:
        """Simulated time reached by the windows run: the start of the next window."""
        return self._t

    def step(self, progress: Optional[Callable[[int], None]] = None, overlap: bool = False) -> bool:
        """Generate and run the next window; False after the last one. With overlap, the next
        window is admitted before this one runs and built next to its loop, in a thread
        (Stream.build_window writes nothing the loop reads; its frees' slots are released only
        after the loop), and the window after it is drawn in that thread while the main one
        admits (draw_arrivals is pure): the same events and results, but the stream is then a
        window ahead, so a checkpoint is only taken after a step without overlap."""
        if self.ahead is None:
            plan = self.stream.admit_window()
            if plan is None:
                return False
            self.ahead = self.stream.build_window(plan)
        win, freed = self.ahead
        self.ahead = None
        es = self.stream
        drawing = building = None
        if overlap and es.time_reached < es.duration:
            if es.drawn is None:
                es.drawn = es.draw_window(es.next_window_index(), es.lv)
            drawing = _builder().submit(es.draw_window, es.drawn.w + 1, es.drawn, True)
            plan = es.admit_window()  # the drawn window's arrivals, while the one after is drawn
            building = _builder().submit(es.build_window, plan) if plan is not None else None
        try:
            self._run_window(win, progress)
        finally:
            if drawing is not None:
                es.drawn = drawing.result()
            if building is not None:
                self.ahead = building.result()
        self.stream.release_slots(freed)
        self._t = win.t_end
        return True

    def next_t_end(self) -> float:
        """The simulated time the next step reaches."""
        return self.ahead[0].t_end if self.ahead is not None else self.stream.next_window_end()

    def _run_window(self, win, progress) -> None:
        # migration (compaction.py) updates an allocation's pfn through State.alloc_pfn: the
        # very array the loop indexes (the stream replaces lv.a_pfn when it grows the slots)
        self.s = self.s._replace(alloc_pfn=self.stream.lv.a_pfn)
        st, es = self.s, self.stream
        t0 = time.perf_counter()
        n = win.n_events
        for start in range(0, n, CHUNK_EVENTS):
            stop = min(n, start + CHUNK_EVENTS)
            self.k = run_events(st, win.ev_time, win.ev_code, win.ev_info, es.lv, es.ct.mt, es.ct.on_alloc,
                                es.ct.on_free, self.c_served, self.samples, self.clock, start, stop, self.k)
            if progress:
                progress(stop - start)
        self.loop_s += time.perf_counter() - t0
        self.events += n

    def finish(self) -> None:
        self.k = sample_until(self.s, self.samples, self.clock, self.k, float(self.sc.workload.duration_s))

    def result(self, wall_s: float) -> SimResult:
        final = {key: float(v) for key, v in counters(self.s).items()}
        final.update(derived(final))
        eps = self.events / self.loop_s if self.loop_s > 0 else 0.0
        final["events_per_second"] = eps
        return SimResult(
            config=dataclasses.asdict(self.sc),  # what OmegaConf.to_container(structured(sc)) gives, 50x faster
            counters=final,
            samples=self.samples[:self.k].copy(),
            events_per_second=eps,
            wall_s=wall_s,
            directmap=region_codes(self.s),
            n_events=self.events,
        )


@functools.cache
def _builder() -> ThreadPoolExecutor:
    """The thread that builds the next window while the loop runs (both release the GIL)."""
    return ThreadPoolExecutor(1, thread_name_prefix="dmfrag-window")


def overlap_default() -> bool:
    """Build windows next to the loop when this process may use two CPUs or more."""
    return usable_cpus() >= 2


def start(sc) -> Run:
    """A fresh run, the last checkpoint of this config, or a saved machine to continue."""
    if sc.checkpoint_path:
        run = checkpoint.load_if_matches(sc.checkpoint_path, sc, Run)
        if run is not None:
            return run
    if sc.machine.snapshot:
        return checkpoint.load_snapshot(sc.machine.snapshot, sc, Run)
    return Run(sc)


def simulate(cfg, progress: Optional[Callable[[float, float], None]] = None,
             overlap: Optional[bool] = None) -> SimResult:
    """Run one simulation. `cfg`: a DictConfig from load_config(), a dict or a SimConfig.
    `progress(simulated_s, duration_s)` is called between chunks of the loop. `overlap`: build
    the next window in a thread while the loop runs (default: with two CPUs or more; a sweep's
    tasks, one per CPU, pass False). Results are the same either way."""
    sc = to_sim_config(cfg)
    overlap = overlap_default() if overlap is None else overlap
    t0 = time.perf_counter()
    run = start(sc)
    duration = float(sc.workload.duration_s)
    every = sc.checkpoint_every_s
    next_ckpt = (np.floor(max(run.t, 0.0) / every) + 1) * every if sc.checkpoint_path else np.inf
    tick = (lambda _n: progress(min(max(run.t, 0.0), duration), duration)) if progress else None
    # no window built ahead across a checkpoint: the state saved is the stream's at that time
    while run.step(tick, overlap and not next_ckpt <= run.next_t_end() < duration):
        if run.t >= next_ckpt and run.t < duration:
            checkpoint.save(sc.checkpoint_path, run)
            next_ckpt = (np.floor(run.t / every) + 1) * every
    run.finish()
    if progress:
        progress(duration, duration)
    return run.result(time.perf_counter() - t0)


def save_machine(cfg, path) -> SimResult:
    """Run cfg and keep the whole machine at its end (state, live workload, samples) in `path`:
    later runs start from it with `machine.snapshot=path` (any policy when it was aged under
    `none`; the policy acts from the snapshot on) and continue to their own duration_s."""
    sc = to_sim_config(cfg)
    t0 = time.perf_counter()
    run = start(sc)
    while run.step(overlap=overlap_default()):
        pass
    checkpoint.save(path, run, snapshot=True)
    run.finish()
    return run.result(time.perf_counter() - t0)
