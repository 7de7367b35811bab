"""The structured configs registered with Hydra's ConfigStore (the schema of conf/), and
`load_config()`: compose from Python what `python -m sim <overrides>` composes."""
from __future__ import annotations

import functools
from typing import Iterable

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from .config import MachineConfig, PolicyConfig, SimConfig, WorkloadConfig, validate
from .paths import conf_dir

@functools.cache
def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="sim_schema", node=SimConfig)
    cs.store(group="machine", name="machine_schema", node=MachineConfig)
    cs.store(group="workload", name="workload_schema", node=WorkloadConfig)
    cs.store(group="policy", name="policy_schema", node=PolicyConfig)


def to_sim_config(cfg) -> SimConfig:
    """DictConfig / dict / SimConfig -> a validated SimConfig (raises ConfigError)."""
    if isinstance(cfg, SimConfig):
        return validate(cfg)
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    merged = OmegaConf.merge(OmegaConf.structured(SimConfig), cfg)
    return validate(OmegaConf.to_object(merged))


def load_config(overrides: Iterable[str] = (), config_name: str = "config") -> DictConfig:
    """Compose conf/ with Hydra overrides (e.g. ["machine.mem_mib=65536"]); validated."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name, overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = compose(config_name, overrides=list(overrides))
    to_sim_config(cfg)
    return cfg
