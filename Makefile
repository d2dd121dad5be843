# Two commands on a fresh machine (Python >= 3.11 and pip only):
#   make local   - run the API locally (embedded PostgreSQL unless DATABASE_URL is set)
#   make test    - run the whole test suite (embedded PostgreSQL unless TEST_DATABASE_URL is set)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock 2>/dev/null | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
RUNTIME_PROVIDED := --no-emit-package botocore --no-emit-package urllib3

.DEFAULT_GOAL := help
.PHONY: help venv test lint format local lock generate clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP) ## Create .venv and install the locked dependencies

test: $(STAMP) ## Run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions migrations local benchmarks

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

local: $(STAMP) ## Run the API locally on 127.0.0.1 (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/python -m local $(ARGS)

lock: $(STAMP) ## Re-resolve requirements.lock and the generated layer/migration requirements
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes -o requirements.lock -q
	# The Lambda runtime ships boto3/botocore; the layer must not carry another ~80 MB copy.
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 -c requirements.lock -o shared/requirements.txt -q $(RUNTIME_PROVIDED)
	$(BIN)/uv pip compile pyproject.toml --extra migrations --universal --python-version 3.11 -c requirements.lock -o migrations/requirements.txt -q $(RUNTIME_PROVIDED)

generate: $(STAMP) ## Regenerate openapi.json and the migrations digest in template.yaml
	$(BIN)/python -m local.openapi
	$(BIN)/python -m local.migrations_digest

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
