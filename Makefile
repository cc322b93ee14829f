# The README's commands. Each one bootstraps .venv from a fresh clone by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench stress clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/core_demo.py
	$(PY) examples/cmdbox/main.py
	$(PY) examples/web/demo.py

# PYTEST_ARGS: extra pytest arguments (CI deselects the process-killing fault tests with them).
PYTEST_ARGS ?=

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict src

bench: $(STAMP)
	$(PY) bench/run.py

stress: $(STAMP)
	$(PY) -m pytest -q -m stress

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
