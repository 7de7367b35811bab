"""SimResult: what one simulation returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from .layout import COUNTER_NAMES, N_COUNTERS


def timeseries_frame(samples: np.ndarray) -> pl.DataFrame:
    """The engine's sample rows (counters, free 2M blocks, time in us) as a frame: t_s and
    each counter under its name and unit."""
    cols = {"t_s": samples[:, N_COUNTERS + 1] / 1e6}
    cols.update((name, samples[:, i] * scale) for name, i, scale in COUNTER_NAMES)
    cols["free_2m_blocks"] = samples[:, N_COUNTERS]
    return pl.DataFrame(cols)


@dataclass
class SimResult:
    config: dict  # the resolved config (plain containers)
    counters: dict[str, float]  # final counters, kernel names where one exists
    samples: np.ndarray  # the engine's sample rows; `timeseries` is the frame made of them
    events_per_second: float  # events / wall time of the compiled event loop
    wall_s: float = 0.0  # whole simulate() wall time: boot + workload + loop
    directmap: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # per 2M region, see picture.py
    n_events: int = 0

    @cached_property
    def timeseries(self) -> pl.DataFrame:
        """One row per sample of simulated time (t_s + counters), made when first read: a
        sweep that records no series does not pay the ~4 ms of building it."""
        return timeseries_frame(self.samples)
