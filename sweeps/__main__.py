"""`python -m sweeps [+sweep=<preset>] [hydra overrides]`: a sweep of the simulator.

A Hydra app over the same conf/ tree as `python -m sim`, with conf/sweeps.yaml as primary
config: always a multirun, launched by the `dmfrag_ray` launcher (hydra_plugins/), which runs
the jobs as Ray tasks and records them in MLflow. Exit code 1 if any run failed.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sim.paths import conf_dir

from .schema import register

register()


@hydra.main(config_path=str(conf_dir()), config_name="sweeps", version_base=None)
def _app(cfg: DictConfig) -> None:  # pragma: no cover - jobs run in the launcher, not here
    raise RuntimeError("sweeps jobs are run by the dmfrag_ray launcher (hydra/launcher=dmfrag_ray)")


def main() -> None:
    from . import service

    # A sweep is always a multirun (conf/sweeps.yaml sets hydra.mode). Say so on the command line
    # too: when composition fails (a misspelt key), Hydra cannot read hydra.mode from the config
    # and would report the sweep override as ambiguous instead of naming the bad key.
    args = sys.argv[1:]
    info_only = any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion",
                          "-sc") or a.startswith("--info=") for a in args)
    if not info_only and not any(a in ("-m", "--multirun", "-r", "--run") or a.startswith("hydra.mode=")
                                 for a in args):
        sys.argv.insert(1, "--multirun")
    _app()
    s = service.LAST
    if s is not None and s.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
