# Two commands on a fresh clone: `make run` (the app) and `make test` (lint, then every test).
# Each creates or reuses the virtual environment in .venv; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test hub lint bench wheels clean

# The client with an embedded hub and the bundled models (the client extra).
run: $(VENV)/.app
	$(BIN)/fer-tui $(ARGS)

# Lint and type check first: a type error fails CI (.ci/run) before minutes of tests do.
test: lint
	$(BIN)/python -m pytest -q $(ARGS)

# The hub alone needs only the base install; this venv has the client too.
hub: $(VENV)/.app
	$(BIN)/fer-hub $(ARGS)

# ruff (style and bugs) and mypy (types; files and settings in pyproject.toml).
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python bench/hub_bench.py
	$(BIN)/python bench/model_bench.py
	$(BIN)/python bench/client_bench.py

# Which dependency has a wheel on which platform and CPython (docs/install.md).
wheels: $(VENV)/.dev
	$(BIN)/python tools/wheel_matrix.py $(ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[client]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[client,train,redis,dev]'
	touch $@ $(VENV)/.app

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
