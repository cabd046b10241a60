# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv worker api bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

## Run the whole stack: Temporal dev server (SQLite under var/), worker, API on 127.0.0.1:8000.
run: $(STAMP)
	$(BIN)/python -m disputeflow.stack

## Create the environment and run the test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

worker: $(STAMP)
	$(BIN)/python worker.py

api: $(STAMP)
	$(BIN)/python -m uvicorn api.app:app --host 127.0.0.1 --port 8000

bench: $(STAMP)
	$(BIN)/python benchmarks/breach_lateness.py

clean:
	rm -rf $(VENV) var .pytest_cache
