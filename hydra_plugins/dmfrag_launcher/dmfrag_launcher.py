"""Hydra launcher `dmfrag_ray` and sweeper `dmfrag` (discovered by Hydra under the
`hydra_plugins` namespace package).

The launcher does not run Hydra's per-job `run_job` (a full composition, an output folder and
logging set-up per job): it composes once per config-group combination (sweeps.compose), runs
the jobs in chunks as Ray tasks and records them in MLflow (sweeps.service). The sweeper is
Hydra's BasicSweeper without its per-job `validate_batch_is_legal` composition, which the
launcher's validation of every job replaces.
"""
# (no `from __future__ import annotations`: Hydra execs this module outside sys.modules,
# where dataclasses cannot resolve string annotations)

import logging
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

log = logging.getLogger(__name__)


@dataclass
class DmfragRayLauncherConf:
    _target_: str = "hydra_plugins.dmfrag_launcher.dmfrag_launcher.DmfragRayLauncher"


@dataclass
class DmfragSweeperConf:
    _target_: str = "hydra_plugins.dmfrag_launcher.dmfrag_launcher.DmfragSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/launcher", name="dmfrag_ray", node=DmfragRayLauncherConf,
                             provider="dmfrag")
ConfigStore.instance().store(group="hydra/sweeper", name="dmfrag", node=DmfragSweeperConf,
                             provider="dmfrag")


class DmfragSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # the dmfrag_ray launcher composes and validates every job before any task starts
        return None

    @staticmethod
    def split_arguments(overrides, max_batch_size):
        """Expanding the sweep's ranges and choices: a bad one (range(0,5,0)) is one line, exit 2."""
        for o in overrides:
            if o.is_sweep_override():
                try:
                    list(o.sweep_string_iterator())
                except Exception as e:
                    print(f"error: config key '{o.get_key_element()}' = {o.input_line!r} is invalid: "
                          f"allowed a valid sweep ({type(e).__name__}: {e})", file=sys.stderr)
                    sys.exit(2)
        return BasicSweeper.split_arguments(overrides, max_batch_size)


class DmfragRayLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sim.config import ConfigError
        from sweeps.preflight import Unreachable
        from sweeps.service import run_sweep
        from sweeps.signals import Interrupted

        assert self.config is not None and self.hydra_context is not None
        try:
            summary = run_sweep(self.hydra_context.config_loader, self.config, job_overrides, initial_job_idx)
        except ConfigError as e:  # a bad value, found before anything started: one clear line
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Unreachable as e:  # a service that does not answer: one line, within seconds
            print(f"error: {e}", file=sys.stderr)
            sys.exit(3)
        except Interrupted as e:  # SIGTERM / SIGINT: the service has cleaned up and said so
            sys.exit(e.code)
        rets = []
        for job, status in zip(summary.jobs, summary.job_status):
            r = JobReturn(overrides=list(job.overrides), status=JobStatus.COMPLETED,
                          _return_value={"hash": job.hash, "status": status})
            rets.append(r)
        return rets
