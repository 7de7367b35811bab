# dmfrag — one-command set-up: every target creates .venv and installs the project when needed.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-services test-slow run sweep ui bench oracle clean

# uv installs the same versions as pip in under a minute instead of ~2.5 (a fresh machine, no
# cache: parallel downloads and installs); pip does it when uv cannot be had. Bytecode is
# compiled at install, as pip does: with PYTHONDONTWRITEBYTECODE set, every process (each Ray
# worker, each test's subprocess) would compile ray's and mlflow's sources again at import
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	{ $(BIN)/python -m pip install -q --disable-pip-version-check uv && \
	  $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'; } || \
	  $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# the suite a developer runs (under 15 min on 2 cores): everything but the real-service tests
# and the `slow` ones. Two pytest-xdist workers; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not services and not browser" -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

# the real-service tests, which CI runs after `make test`: markers `services` (one session of
# PostgreSQL, an MLflow server and a 3-node Ray cluster, in one worker: kills mid-sweep, loopback
# only, the 5,000-run load test into PostgreSQL) and `browser` (the MLflow UI in headless
# Chromium, in the other worker)
test-services: $(STAMP)
	$(BIN)/python -m pytest -m "(services or browser) and not slow" -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

# the `slow` tests: the 5,000-run load test recording every run over the MLflow server's REST
# API, and the preset calibration (forty 64 GiB runs)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -s $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/python -m sim $(ARGS)

# the default sweep (smoke-sized, local Ray, MLflow in ./mlflow.db); ARGS adds Hydra overrides
sweep: $(STAMP)
	$(BIN)/python -m sweeps +sweep=smoke $(ARGS)

# the MLflow UI on the project's store (./mlflow.db): 1 worker, 127.0.0.1 only, no job runner
UI_PORT ?= 5000
ui: $(STAMP)
	$(BIN)/python -m sweeps.ui --port $(UI_PORT) $(UI_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sim.py

# boot a real kernel under QEMU per workload and collect the direct map's state (cached by
# kernel + workload + memory size); ORACLE_ARGS go to infra/kernel-oracle (e.g. MEM=2G,4G)
oracle: $(STAMP)
	$(MAKE) -C infra/kernel-oracle kernel initramfs run collect $(ORACLE_ARGS)

# numba's on-disk cache does not notice edits in other modules of sim/: clear it after editing
clean:
	rm -rf outputs multirun .pytest_cache
	find sim -name '*.nbi' -delete -o -name '*.nbc' -delete -o -name 'dmfrag-warm-*.json' -delete
