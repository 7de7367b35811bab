"""dmfrag sweeps: Hydra-defined parameter sweeps of the simulator, run as Ray tasks, recorded
in MLflow, aggregated with polars.  Entry point: `python -m sweeps` (see sweeps/__main__.py)."""
import os as _os

# Ray (2.60) binds a local instance to every interface unless this is set before ray is first
# imported; with it, `_node_ip_address="127.0.0.1"` holds and nothing listens beyond loopback.
_os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
