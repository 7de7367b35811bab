"""The sweep service's own config nodes (typed, validated by OmegaConf like the simulator's):
`ray`, `tracking` and `sweep` at the root of conf/sweeps.yaml. They steer the service and are
not part of a run's config (nor of its hash)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf

RUNTIME_KEYS = ("ray", "tracking", "sweep")


@dataclass
class RayConf:
    address: Optional[str] = None  # None: $RAY_ADDRESS, else a local instance started on demand
    num_cpus: Optional[int] = None  # local instance only; None: all cores
    max_retries: int = 3  # a task lost with its worker is retried this many times
    runtime_env: Optional[dict[str, Any]] = None  # passed to ray.init on a cluster (pip, working_dir, ...)


@dataclass
class TrackingConf:
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "dmfrag"
    artifact_root: Optional[str] = None  # for a new experiment on the default store: <project>/mlartifacts
    # auto: SQL stores are written in bulk (one transaction per finished chunk, MLflow's own
    # ORM models); client: MlflowClient.create_run/log_batch/set_terminated per run.
    mode: str = "auto"
    client_threads: int = 4  # client mode: runs of a finished chunk recorded concurrently (1..64)
    timeseries_steps: int = 50  # time series logged as metric steps (ts/<name>), down-sampled to at most this
    # which time series become metric steps (all of them are in the timeseries.parquet artifact); ["*"]: all
    timeseries_metrics: list[str] = field(default_factory=lambda: [
        "direct_map_level2_splits", "direct_map_level3_splits", "DirectMap4k", "DirectMap2M", "DirectMap1G",
        "nr_free_pages", "free_2m_blocks", "alloc_fail", "unmapped_cache_blocks", "unmapped_cache_held_pages",
        "unmapped_cache_stranded_pages", "tlb_flush_kernel_range", "tlb_flush_kernel_pages", "tlb_flush_all"])
    picture: bool = True  # direct-map PNG per run (rendered in the worker)
    timeseries_artifact: bool = True  # full-resolution time series parquet per run
    connect_timeout_s: float = 5.0  # the tracking store and the Ray address must answer within this


@dataclass
class SweepConf:
    name: str = "adhoc"
    chunk_size: int = 0  # runs per Ray task; 0: auto (enough tasks to fill the window twice)
    max_in_flight: int = 0  # tasks submitted and not yet collected; 0: 2 x cluster CPUs
    ledger_dir: Optional[str] = None  # None: <project>/.ledger
    # runs longer than their checkpoint_every_s keep a checkpoint here (by config hash) while they run,
    # so a task retried after a lost worker resumes; shared storage on a cluster. None: <project>/.checkpoints
    checkpoint_dir: Optional[str] = None
    out_dir: Optional[str] = None  # sweep table + plots; None: hydra.sweep.dir
    retry_failed: bool = True  # a re-run sweep re-runs configs that failed (their old run is deleted)
    top: int = 10  # rows of the sweep table printed at the end
    sort_by: str = "direct_map_level2_splits"
    plot_x: list[str] = field(default_factory=list)  # x axes for plots; []: every numeric swept key
    progress: bool = True
    dry_run: bool = False  # compose and validate every job, print the count, run nothing
    # exactly once across concurrent sweeps (sweeps/claims.py, sweeps/lease.py)
    lease_s: float = 60.0  # a claim of a driver that stopped renewing its lease this long is dead
    claim_settle_s: float = 2.0  # tracking servers (no transactions): wait before reading claims back
    wait_poll_s: float = 2.0  # how often to look at configs another live sweep is running
    max_run_memory: Optional[str] = None  # e.g. 8G: refuse runs estimated above it (sim/memory.py)


def register() -> None:
    from hydra.core.config_store import ConfigStore

    import sim.hydra_conf

    sim.hydra_conf.register_configs()
    # a plain dict node with typed children: it must come before `config` (whose root is the
    # simulator's SimConfig) in conf/sweeps.yaml's defaults, or the extra root keys are refused
    ConfigStore.instance().store(name="sweeps_schema", node={
        "ray": OmegaConf.structured(RayConf),
        "tracking": OmegaConf.structured(TrackingConf),
        "sweep": OmegaConf.structured(SweepConf),
    })


@dataclass
class Runtime:
    ray: RayConf
    tracking: TrackingConf
    sweep: SweepConf

    @staticmethod
    def from_config(cfg) -> "Runtime":
        def get(key, cls):
            node = cfg.get(key) if cfg is not None else None
            if node is None:
                return cls()
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), node))

        rt = Runtime(get("ray", RayConf), get("tracking", TrackingConf), get("sweep", SweepConf))
        rt.validate()
        return rt

    def validate(self) -> None:
        """Ranges of the service's own settings, checked before any store or task is touched."""
        from sim.config import ConfigError

        if self.tracking.mode not in ("auto", "bulk", "client"):
            raise ConfigError("tracking.mode", self.tracking.mode, "one of auto, bulk, client")
        for key, value, lo, hi in (("tracking.client_threads", self.tracking.client_threads, 1, 64),
                                   ("tracking.timeseries_steps", self.tracking.timeseries_steps, 0, 100000),
                                   ("ray.max_retries", self.ray.max_retries, -1, 100),  # -1: forever
                                   ("sweep.chunk_size", self.sweep.chunk_size, 0, 1 << 20),
                                   ("sweep.max_in_flight", self.sweep.max_in_flight, 0, 1 << 20),
                                   ("sweep.top", self.sweep.top, 0, 1 << 20),
                                   ("ray.num_cpus", self.ray.num_cpus, 1, 1 << 16),
                                   ("tracking.connect_timeout_s", self.tracking.connect_timeout_s, 0.1, 600),
                                   ("sweep.lease_s", self.sweep.lease_s, 5, 86400),
                                   ("sweep.claim_settle_s", self.sweep.claim_settle_s, 0, 600),
                                   ("sweep.wait_poll_s", self.sweep.wait_poll_s, 0.05, 600)):
            if value is None and key == "ray.num_cpus":  # all cores
                continue
            if not lo <= value <= hi:
                raise ConfigError(key, value, f"{lo} <= value <= {hi}")
        for key, value in (("tracking.experiment", self.tracking.experiment), ("sweep.name", self.sweep.name)):
            if not str(value).strip():
                raise ConfigError(key, value, "a non-empty name")
        if self.sweep.max_run_memory is not None:
            from sim.memory import parse_bytes

            try:
                ok = parse_bytes(self.sweep.max_run_memory) > 0
            except (ValueError, IndexError):
                ok = False
            if not ok:
                raise ConfigError("sweep.max_run_memory", self.sweep.max_run_memory, "a size such as 512M, 8G")
        if self.ray.address is not None and not str(self.ray.address).strip():
            raise ConfigError("ray.address", self.ray.address, "host:port, ray://host:port or auto")
