"""dmfrag simulator: x86-64 direct map + buddy page allocator + workloads."""
from .config import ConfigError, MachineConfig, SimConfig
from .machine import Machine

__all__ = ["ConfigError", "Machine", "MachineConfig", "SimConfig"]
