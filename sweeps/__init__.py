"""dmfrag sweeps: Hydra-defined parameter sweeps of the simulator, run as Ray tasks, recorded
in MLflow, aggregated with polars.  Entry point: `python -m sweeps` (see sweeps/__main__.py)."""
