# The README's commands. Each one bootstraps .venv from a fresh clone by itself.
#
# `make demo` installs tidings with only what the demos import (the "demo" dependency group);
# `make test`, `lint`, `bench` and `stress` install the development tools too (the "dev" group,
# which includes "demo"); `make bench` adds the "bench" group (Celery, a contender it measures).
# Dependency groups (PEP 735) need pip >= 25.1, so .venv gets one first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
PIP_STAMP := $(VENV)/.pip
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
# PYTEST_ARGS: extra pytest arguments (CI deselects the fault and packaging tests with them on
# its other Pythons).
PYTEST_ARGS ?=

.PHONY: demo demo-redis test test-pure packaging lint bench stress clean

$(PIP_STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) "pip>=25.1"
	touch $(PIP_STAMP)

# The editable install builds the C accelerator: reinstall when its source changes.
$(DEMO_STAMP): pyproject.toml setup.py src/tidings/_speedups.c $(PIP_STAMP)
	$(PIP) -e . --group demo
	touch $(DEMO_STAMP)

# The dev group includes the demo group, so it satisfies the demo too.
$(STAMP): pyproject.toml setup.py src/tidings/_speedups.c $(PIP_STAMP)
	$(PIP) -e . --group dev
	touch $(STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) examples/core_demo.py
	$(PY) examples/cmdbox/main.py
	$(PY) examples/web/demo.py
	$(PY) examples/durable/demo.py
	$(PY) examples/remote/demo.py

# The queue/broadcast demo on a local Redis (TIDINGS_REDIS_URL) with two worker processes.
demo-redis: $(DEMO_STAMP)
	$(PY) examples/remote/demo.py --redis

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The core suite on the pure-Python path (the default run uses the compiled one where built).
test-pure: $(STAMP)
	TIDINGS_NO_EXTENSIONS=1 $(PY) -m pytest -q tests/core

# The build of the C accelerator: the sdist without a compiler, a wheel per CPython 3.10-3.13.
packaging: $(STAMP)
	$(PY) -m pytest -q -m packaging tests/test_speedups_build.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict src tests

# The bench group (Celery, the remote benchmark's contender) on top of the dev group.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PIP) --group bench
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.run

stress: $(STAMP)
	$(PY) -m pytest -q -m stress

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build src/tidings/*.so
