# The two quickstart commands of README.md: `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test setup services bench

# The node and, beside it, the client kit (clients/python) with `concordat-extract`, which
# `concordat extract` is and the kit's tests call.
$(BIN)/concordat: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e './clients/python[extract]'
	touch $(BIN)/concordat

setup: $(BIN)/concordat

# PostgreSQL (Debian's package, started, loopback trust for `postgres`) and the pinned Go tools
# (OPA, grpcurl, ghz) in .tools/bin: what the suite and the bench need beside Python.
services:
	scripts/setup_services.sh

up: setup
	$(BIN)/concordat up

test: setup services
	$(BIN)/python -m pytest -q

bench: setup services
	$(BIN)/python -m bench
