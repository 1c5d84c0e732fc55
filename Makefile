# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint openapi migrate

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (set PYTHON=python3.x)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the hub and its dependencies into $(VENV) (the first time takes a minute or two)..."
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@set -o pipefail; $(BIN)/python -m pip install --progress-bar off -e '.[dev]' \
		| { grep --line-buffered -E '^(Collecting|Successfully installed)' || true; }
	@touch $(STAMP)

install: $(STAMP)

## Serve the hub on the embedded default (SQLite, in-process worker, sandbox providers).
run: $(STAMP)
	$(BIN)/hub migrate
	$(BIN)/hub serve

## Run the whole suite (PostgreSQL/Redis tests run when HUB_TEST_* are set).
# Two workers by default: much of the suite waits on sockets (the sandbox, callbacks),
# so two processes overlap the waits even on two cores. TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

openapi: $(STAMP)
	$(BIN)/hub openapi

migrate: $(STAMP)
	$(BIN)/hub migrate
