"""The structured configs registered with Hydra's ConfigStore (the schema of conf/), and
`load_config()`: compose from Python what `python -m sim <overrides>` composes."""
from __future__ import annotations

from typing import Iterable

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import CallerConfig, ConfigError, MachineConfig, PolicyConfig, SimConfig, WorkloadConfig, validate
from .paths import conf_dir

_registered = False


def register_configs() -> None:
    global _registered
    if _registered:
        return
    cs = ConfigStore.instance()
    cs.store(name="sim_schema", node=SimConfig)
    cs.store(group="machine", name="machine_schema", node=MachineConfig)
    cs.store(group="workload", name="workload_schema", node=WorkloadConfig)
    cs.store(group="policy", name="policy_schema", node=PolicyConfig)
    _registered = True


def to_sim_config(cfg) -> SimConfig:
    """DictConfig / dict / SimConfig -> a validated SimConfig (raises ConfigError)."""
    if isinstance(cfg, SimConfig):
        return validate(cfg)
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    merged = OmegaConf.merge(OmegaConf.structured(SimConfig), cfg)
    sc = OmegaConf.to_object(merged)
    sc.workload.callers = {name: _caller(name, c) for name, c in sc.workload.callers.items()}
    return validate(sc)


def _caller(name: str, c) -> CallerConfig:
    if isinstance(c, CallerConfig):
        return c
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CallerConfig), c))
    except OmegaConfBaseException as e:
        key = f"workload.callers.{name}" + (f".{e.key}" if getattr(e, "key", None) else "")
        raise ConfigError(key, getattr(e, "value", c), f"a CallerConfig value ({e.msg.splitlines()[0]})") from None


def load_config(overrides: Iterable[str] = (), config_name: str = "config") -> DictConfig:
    """Compose conf/ with Hydra overrides (e.g. ["machine.mem_mib=65536"]); validated."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    gh = GlobalHydra.instance()
    if gh.is_initialized():
        cfg = compose(config_name, overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = compose(config_name, overrides=list(overrides))
    to_sim_config(cfg)
    return cfg
