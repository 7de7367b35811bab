import os

# Tests share numba's on-disk cache (sim/__pycache__); the first test run compiles once.
os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_collection_modifyitems(config, items):
    """The real-services tests first: under pytest-xdist (`make test`) their group is the
    longest chain and runs in one worker from the start while the other worker runs the rest.
    A stable reorder, the same in every worker (xdist checks that)."""
    items.sort(key=lambda it: 0 if it.get_closest_marker("services") else 1)
