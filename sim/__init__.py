"""dmfrag simulator: x86-64 direct map + buddy page allocator + workloads.

    from sim import Machine, MachineConfig, load_config, simulate
"""
from .config import ConfigError, MachineConfig, PolicyConfig, SimConfig
from .hydra_conf import load_config, to_sim_config
from .machine import Machine
from .policy import policy_config
from .result import SimResult
from .simulate import save_machine, simulate

__all__ = ["ConfigError", "Machine", "MachineConfig", "PolicyConfig", "SimConfig", "SimResult",
           "load_config", "policy_config", "save_machine", "simulate", "to_sim_config"]
