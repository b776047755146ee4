# QIG Control Center — the two commands are `make up` and `make test`.
# Every target re-runs only what changed (stamp files), so a second `make up` starts in seconds.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
LOCK := requirements.lock
NODE_STAMP := frontend/node_modules/.installed
DIST := frontend/dist/index.html
FRONTEND_SOURCES := $(shell find frontend/src frontend/public frontend/index.html frontend/vite.config.* frontend/tsconfig*.json -type f 2>/dev/null)

# Production-like settings for `check --deploy`: behind HTTPS on a real host name.
DEPLOY_ENV := QIG_HTTPS=1 QIG_ALLOWED_HOSTS=qig.example.com

.PHONY: help up install build test lint typecheck migrations-check deploy-check lock lock-check audit \
        test-backend test-frontend test-e2e bench bench-llamacpp bench-product chromium clean wheel

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

up: install build  ## install everything and run the product on http://127.0.0.1:9200
	$(BIN)/qig up $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

install: $(PY_STAMP) $(NODE_STAMP)  ## create .venv and install Python and Node dependencies

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"Python >= 3.11 is required, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)

# Every package from the lock, each checked against its recorded hashes (torch is the 2.13.0 CPU
# wheel of the machine's find-links, never the CUDA build), then the project itself and nothing more.
$(PY_STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

lock: $(PY_STAMP)  ## regenerate requirements.lock from pyproject.toml (LOCK_ARGS=--upgrade: every pin)
	$(BIN)/python scripts/lock.py $(LOCK_ARGS)

lock-check: | $(BIN)/python  ## fail when pyproject.toml's dependencies changed since the lock was made
	@$(BIN)/python scripts/lock.py --check

$(NODE_STAMP): frontend/package.json frontend/package-lock.json
	@node -e 'const [maj] = process.versions.node.split("."); if (+maj < 20) { console.error("Node >= 20 is required, found " + process.version); process.exit(1) }'
	cd frontend && npm ci --no-audit --no-fund
	@touch $@

build: $(DIST)  ## build the React app into frontend/dist

$(DIST): $(NODE_STAMP) $(FRONTEND_SOURCES)
	cd frontend && npm run build

# SKIP_STATIC=1 leaves out what does not depend on the mode (lint, typecheck, the audit, the
# frontend's unit tests): CI's second, services-mode pass sets it, after the embedded pass ran them.
STATIC_CHECKS := $(if $(filter 1,$(SKIP_STATIC)),,lint typecheck audit)
FRONTEND_UNIT := $(if $(filter 1,$(SKIP_STATIC)),,test-frontend)

test: lock-check install build chromium $(STATIC_CHECKS) migrations-check deploy-check test-backend $(FRONTEND_UNIT) test-e2e  ## install everything and run the whole suite
	@echo "make test: every check passed"

lint: $(PY_STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY_STAMP)  ## mypy
	$(BIN)/mypy .

audit: $(PY_STAMP)  ## known vulnerabilities: pip-audit on the lock, npm audit in frontend/
	$(BIN)/python scripts/audit.py

migrations-check: $(PY_STAMP)  ## fail when a model change has no migration
	$(BIN)/python manage.py makemigrations --check --dry-run

deploy-check: $(PY_STAMP)  ## Django's deployment checklist with production settings
	$(DEPLOY_ENV) $(BIN)/python manage.py check --deploy --fail-level WARNING

# $(NODE_STAMP): tests/inference/test_ollama_js.py runs ollama-js from frontend/node_modules.
test-backend: $(PY_STAMP) $(NODE_STAMP) $(DIST)  ## pytest (engine, API, websockets, Celery, the live product)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-frontend: $(NODE_STAMP)  ## eslint + prettier check, Vitest component and hook tests
	cd frontend && npm run lint
	cd frontend && npm test

test-e2e: $(PY_STAMP) $(DIST) chromium  ## Playwright in Debian's Chromium against `qig up`
	cd frontend && npx playwright test

wheel: $(PY_STAMP) $(DIST)  ## build dist/qig_control_center-*.whl, the dashboard inside (pip install it anywhere)
	rm -rf qigcenter/frontend_dist build
	cp -r frontend/dist qigcenter/frontend_dist
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .
	rm -rf qigcenter/frontend_dist build

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(PY_STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	@touch $@

# llama.cpp for bench.decode's comparison (the `bench-llamacpp` extra, docs/engine.md). PyPI has
# llama-cpp-python as an sdist only: pip compiles the llama.cpp it vendors for this CPU
# (GGML_NATIVE: -march=native; the multimodal library left out), about 7 minutes on 2 cores.
# Pinned exactly in pyproject.toml but not hash-locked, like the `bench` extra: requirements.lock
# holds what `make install` installs, and this is never part of it.
LLAMACPP_STAMP := $(VENV)/.bench-llamacpp-installed
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=ON -DLLAVA_BUILD=OFF
$(LLAMACPP_STAMP): $(PY_STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(BIN)/pip install --no-binary llama-cpp-python \
		-e '.[bench-llamacpp]'
	@touch $@

bench-llamacpp: $(LLAMACPP_STAMP)  ## build llama.cpp (llama-cpp-python, ~7 min on 2 cores) so `make bench` compares decode with it

bench: $(BENCH_STAMP)  ## run the engine benchmarks (each prints one JSON object on its last line)
	$(BIN)/python -m bench.route
	$(BIN)/python -m bench.train
	$(BIN)/python -m bench.decode

bench-product: $(BENCH_STAMP) $(DIST)  ## benchmarks against a live product: serving, upload ingest, telemetry websocket, learning, federation, update bundles
	$(BIN)/python -m bench.serve
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.ws
	$(BIN)/python -m bench.learning
	$(BIN)/python -m bench.federation
	$(BIN)/python -m bench.bundles

chromium:  ## make sure Debian's chromium is installed (browser tests)
	@scripts/ensure-chromium.sh

clean:  ## remove the virtualenv, node_modules and the built app (keeps the data dir)
	rm -rf $(VENV) frontend/node_modules frontend/dist
