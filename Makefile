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
# The SAM CLI pins versions that conflict with requirements.lock: its own venv and lock.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-$(shell cat requirements-sam.lock 2>/dev/null | cksum | cut -d' ' -f1)
# Offline: no telemetry; --lint needs no credentials and no region, the build needs neither.
# Checkov too (make security): its own venv and lock.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cat requirements-checkov.lock 2>/dev/null | cksum | cut -d' ' -f1)
SAM := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=eu-west-1 $(SAM_VENV)/bin/sam
# The functions' runtime, which lambda_build/Makefile installs the wheels and compiles the bytecode
# with (first on PATH under sam build): python3.13 on PATH, else pyenv's newest 3.13 (with pip).
# Evaluated only by sam-check, bench-build and bench; PYTHON313=/path/to/python3.13 overrides.
PYTHON313 ?= $(shell for c in "$$(command -v python3.13)" $$(ls -d "$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")"/versions/3.13*/bin/python3.13 2>/dev/null | sort -rV); do [ -n "$$c" ] && "$$c" -m pip --version >/dev/null 2>&1 && { echo "$$c"; break; }; done)
NEED_PYTHON313 = test -n "$(PYTHON313)" || { echo "$@: no python3.13 with pip found (PATH, then \$$(pyenv root)/versions/3.13*); install one (pyenv install 3.13) or set PYTHON313=/path/to/python3.13" >&2; exit 1; }

.DEFAULT_GOAL := help
.PHONY: help venv test lint format local lock contract generate clean sam-check sam-lock bench-build bench bench-cold bench-import bench-scale soak security checkov-lock smoke

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP) ## Create .venv and install the locked dependencies

# The SAM CLI's venv too: tests read the template after SAM's transform (tests/transformed.py).
test: $(STAMP) $(SAM_STAMP) ## Run the whole test suite, with the coverage floor (pyproject.toml)
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

soak: $(STAMP) ## A long mixed load through the local gateway (SOAK_REQUESTS, default 20000)
	SOAK_REQUESTS=$${SOAK_REQUESTS:-20000} $(BIN)/python -m pytest tests/e2e/test_load.py -k sustained $(PYTEST_ARGS)

# The scenario of tests/e2e/test_smoke.py (which runs it against the local gateway) against a
# deployed stack: API_URL is the stack output ApiUrl.
smoke: $(STAMP) ## Post-deploy smoke test over HTTPS: make smoke API_URL=https://...
	@test -n "$(API_URL)" || { echo "usage: make smoke API_URL=https://<api-id>.execute-api.<region>.amazonaws.com/" >&2; exit 2; }
	$(BIN)/python -m local.smoke "$(API_URL)"

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions migrations local benchmarks lambda_build

# bandit at medium severity and up; cfn-lint; checkov (its skips carry their reasons in the
# template); pip-audit of requirements.lock against PyPI's advisories. pip-audit needs PyPI's JSON
# API: where it cannot be reached it says so and the target fails only with AUDIT_REQUIRED=1.
# checkov reads template.yaml, then what SAM's transform makes of it in both modes (created
# everything; your own network and database): the roles, versions and aliases SAM generates.
TRANSFORMED := .aws-sam/transformed
BRING_YOUR_OWN := VpcSubnetIds=subnet-0aaa,subnet-0bbb VpcSecurityGroupIds=sg-0ccc \
	DbSecretArn=arn:aws:secretsmanager:eu-west-1:123456789012:secret:blog-db-AbCdEf
security: $(STAMP) $(CHECKOV_STAMP) $(SAM_STAMP) ## Security scanners: bandit, cfn-lint, checkov, pip-audit
	$(BIN)/bandit -q -r functions shared/blog migrations --severity-level medium
	$(BIN)/cfn-lint template.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
	mkdir -p $(TRANSFORMED)
	$(SAM_VENV)/bin/python local/sam_transform.py > $(TRANSFORMED)/created-dev.json
	$(SAM_VENV)/bin/python local/sam_transform.py Stage=prod > $(TRANSFORMED)/created-prod.json
	$(SAM_VENV)/bin/python local/sam_transform.py Stage=prod $(BRING_YOUR_OWN) > $(TRANSFORMED)/given-prod.json
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -d $(TRANSFORMED) --framework cloudformation --skip-download --compact --quiet
	$(BIN)/python local/audit.py requirements.lock

checkov-lock: $(STAMP) ## Re-resolve requirements-checkov.lock from requirements-checkov.in
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile requirements-checkov.in --universal --python-version 3.11 --generate-hashes -o requirements-checkov.lock -q

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

local: $(STAMP) ## Run the API locally on 127.0.0.1 (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/python -m local $(ARGS)

lock: $(STAMP) ## Re-resolve requirements.lock and the generated layer/migration requirements
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes -o requirements.lock -q
	# The Lambda runtime ships boto3/botocore; the layer must not carry another ~80 MB copy.
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 -c requirements.lock --generate-hashes -o shared/requirements.txt -q $(RUNTIME_PROVIDED)
	$(BIN)/uv pip compile pyproject.toml --extra migrations --universal --python-version 3.11 -c requirements.lock --generate-hashes -o migrations/requirements.txt -q $(RUNTIME_PROVIDED)

contract: $(STAMP) ## Breaking changes of openapi.json against openapi-baseline.json (CHANGELOG.md declares)
	$(BIN)/python -m local.contract

generate: $(STAMP) ## Regenerate openapi.json and the migrations digest in template.yaml
	$(BIN)/python -m local.openapi
	$(BIN)/python -m local.migrations_digest

# --no-deps: the lock is the whole closure, and pip's resolver rejects hash-pinned packages that
# another package asks for with extras (boto3[crt]; pypa/pip#9644); pip check verifies instead.
$(SAM_STAMP): requirements-sam.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-sam.lock
	$(SAM_VENV)/bin/python -m pip check
	rm -f $(SAM_VENV)/.installed-*
	touch $@

$(CHECKOV_STAMP): requirements-checkov.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-checkov.lock
	$(CHECKOV_VENV)/bin/python -m pip check
	rm -f $(CHECKOV_VENV)/.installed-*
	touch $@

# sam build runs lambda_build/Makefile (BuildMethod: makefile) for the layer and every function.
# --no-cached: SAM's build cache keys on each resource's CodeUri, not on lambda_build/.
sam-check: $(SAM_STAMP) ## sam validate --lint, then sam build (arm64, no container) into .aws-sam/build
	$(SAM) validate --lint --template template.yaml
	@$(NEED_PYTHON313)
	PATH="$$("$(PYTHON313)" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$$PATH" \
		$(SAM) build --no-cached --template template.yaml --build-dir .aws-sam/build
	$(PYTHON) local/sam_build_check.py

bench-build: ## The same artifacts for this machine (python3.13, its arch) into .aws-sam/host-build
	@$(NEED_PYTHON313)
	$(MAKE) --no-print-directory -f lambda_build/Makefile host-build PYTHON313="$(PYTHON313)"
	$(PYTHON) local/sam_build_check.py --build-dir .aws-sam/host-build --arch "$$(uname -m)"

# BENCH_ARGS=--quick: few samples (CI); the table also goes to .bench/results.json (--out FILE).
bench: $(STAMP) bench-build ## Performance table: warm/cold latency, import, SQL per request, memory
	$(BIN)/python -m benchmarks --python313 "$(PYTHON313)" $(BENCH_ARGS)

# The cold-start part of `make bench` alone (every function, -X importtime of the slowest); its
# JSON goes to .bench/cold.json, so that a full run's .bench/results.json stays as it was.
bench-cold: $(STAMP) bench-build ## Cold start of every function against FastAPI, with -X importtime
	$(BIN)/python -m benchmarks --python313 "$(PYTHON313)" --only cold --out .bench/cold.json $(BENCH_ARGS)

# The import part of `make bench` alone (no builds needed): ImportUsersFunction's handler against
# raw COPY through the same TLS front, 7 rounds (BENCH_ARGS="--import-rounds N" for another
# number). Its JSON goes to .bench/import.json.
bench-import: $(STAMP) ## Import throughput (new, conflicting, redelivered users) against raw COPY
	$(BIN)/python -m benchmarks --only import --out .bench/import.json $(BENCH_ARGS)

# SCALE_ARGS="--sizes S=1000:10000,L=100000:1000000 --samples 40 --deep 1000" are the defaults;
# the results also go to .bench/scale.json (--out FILE). L takes minutes to seed and index.
bench-scale: $(STAMP) ## Every route at 10k and 1M posts side by side, with the plans at 1M
	$(BIN)/python -m benchmarks.bench_scale $(SCALE_ARGS)

sam-lock: $(STAMP) ## Re-resolve requirements-sam.lock (the SAM CLI) from requirements-sam.in
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile requirements-sam.in --universal --python-version 3.11 --generate-hashes -o requirements-sam.lock -q

clean: ## Remove the virtual environments and caches
	rm -rf $(VENV) $(SAM_VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
