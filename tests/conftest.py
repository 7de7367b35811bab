import os

# Tests share numba's on-disk cache (sim/__pycache__); the first test run compiles once.
os.environ.setdefault("PYTHONHASHSEED", "0")
