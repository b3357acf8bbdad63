# One command per habit: what users and CI run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROWS ?=
RESET ?=

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW ?= ignore

.PHONY: venv demo test lint bench server clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/onceonly demo $(if $(ROWS),--rows $(ROWS)) $(if $(RESET),--reset)

# Two pytest processes at once (end-to-end tests; the rest): tests/groups.py.
test: $(STAMP)
	$(BIN)/python tests/groups.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench $(if $(ROWS),--rows $(ROWS))

# A Prefect server (UI at http://127.0.0.1:4200, or ONCEONLY_PREFECT_PORT) with deployments/prefect.yaml
# deployed and a worker, in the foreground until Ctrl-C (deployments/server.py).
server: $(STAMP)
	$(BIN)/python -m deployments.server

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench/results
