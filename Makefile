# Two commands on a fresh clone: `make run` (the app) and `make test` (every test).
# Each creates or reuses the virtual environment in .venv; nothing is installed by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test hub lint bench clean

# The client with an embedded hub and the bundled model (base dependencies only).
run: $(VENV)/.app
	$(BIN)/fer-tui $(ARGS)

# Every test, with the training and dev extras.
test: $(VENV)/.dev
	$(BIN)/python -m pytest -q $(ARGS)

hub: $(VENV)/.app
	$(BIN)/fer-hub $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

bench: $(VENV)/.dev
	$(BIN)/python bench/hub_bench.py
	$(BIN)/python bench/model_bench.py
	$(BIN)/python bench/client_bench.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $@ $(VENV)/.app

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
