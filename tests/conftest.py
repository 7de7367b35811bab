import os

import pytest

# Tests share numba's on-disk cache (sim/__pycache__); the first test run compiles once.
os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_collection_modifyitems(config, items):
    """The real-services tests first: under pytest-xdist (`make test`) their group is the
    longest chain and runs in one worker from the start while the other worker runs the rest.
    A stable reorder, the same in every worker (xdist checks that)."""
    items.sort(key=lambda it: 0 if it.get_closest_marker("services") else 1)


_model_warm = False


@pytest.fixture(autouse=True)
def _model_compiled_once(request):
    """The model compiled once per machine before the first test that runs it in this process.
    On an empty numba cache both pytest-xdist workers (and the services tests' Ray workers)
    would each compile it at once: twice the ~6 CPU-minutes on a 2-core machine.
    sim.jitcache.ensure_warm takes the machine-wide lock the sweeps' workers take: one process
    compiles, the others wait and load the cache. The real-services tests do not wait here:
    their worker starts PostgreSQL, MLflow and Ray meanwhile, and their Ray tasks wait on the
    same lock."""
    global _model_warm
    if not _model_warm and request.node.get_closest_marker("services") is None:
        import numba

        if not numba.config.DISABLE_JIT:
            from sim.jitcache import ensure_warm

            ensure_warm()
        _model_warm = True
