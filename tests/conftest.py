import os

import pytest

# Tests share numba's on-disk cache (sim/__pycache__); the first test run compiles once.
os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """The real-services tests first: under pytest-xdist (`make test-services`) their group is the
    longest chain and runs in one worker from the start while the other worker runs the rest.
    A stable reorder, the same in every worker (xdist checks that).
    Under `--dist loadgroup`, each test of an `xdist_group` must carry its group in its node id
    (pytest-xdist appends it); with pytest 9, xdist 3.8's suffix is lost (pytest keeps node ids
    as NodeId) and a group is split over the workers, each starting its own PostgreSQL, MLflow
    server and Ray cluster. Stop before that."""
    items.sort(key=lambda it: 0 if it.get_closest_marker("services") else 1)
    if getattr(config.option, "loadgroup", False):  # a pytest-xdist worker under --dist loadgroup
        lost = [it.nodeid for it in items if it.get_closest_marker("xdist_group") and "@" not in it.nodeid]
        if lost:
            raise pytest.UsageError(f"pytest-xdist's --dist loadgroup did not group {lost[0]} (pytest "
                                    f"{pytest.__version__}); install the pytest pyproject.toml names")


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
