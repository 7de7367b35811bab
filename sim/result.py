"""SimResult: what one simulation returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl


@dataclass
class SimResult:
    config: dict  # the resolved config (plain containers)
    counters: dict[str, float]  # final counters, kernel names where one exists
    timeseries: pl.DataFrame  # one row per sample of simulated time (t_s + counters)
    events_per_second: float  # events / wall time of the compiled event loop
    wall_s: float = 0.0  # whole simulate() wall time: boot + workload + loop
    directmap: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # per 2M region, see picture.py
    n_events: int = 0
