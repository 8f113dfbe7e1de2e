# The two quickstart commands of README.md: `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test setup bench

$(BIN)/concordat: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/concordat

setup: $(BIN)/concordat

up: setup
	$(BIN)/concordat up

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench
