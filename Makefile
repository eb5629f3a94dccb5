# The one entry point for people, CI and Jenkins. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)

PORT ?= 3000
HOST ?= 127.0.0.1
API_URL ?= http://127.0.0.1:$(PORT)
DEMO_PORT ?= 7860
DVC_REMOTE ?= local
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE ?= iris-classifier
CONTAINER ?= iris-classifier
PYTEST_ARGS ?=

# Everything runs from the project's venv, with a BentoML home inside the project and telemetry off.
export PATH := $(VENV)/bin:$(PATH)
export BENTOML_HOME := $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := True
export DVC_NO_ANALYTICS := 1
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export UV_NATIVE_TLS := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install pipeline pull push model-import run serve test lint format bento image run-image smoke \
        demo bench bench-model loadtest gdrive-folder metrics clean browser stop-image docker-engine docker-engine-stop lint-jenkinsfile test-image secrets

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv from requirements.lock (Python 3.11)

$(STAMP): requirements.lock
	@$(PYTHON_SYSTEM) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required; found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip sync --quiet --python $(PY) requirements.lock
	@# the project's shared package, importable from the venv without a build step
	@echo "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/iris_classifier_project.pth
	$(VENV)/bin/uv pip check --python $(PY)
	@rm -f $(VENV)/.installed-* && touch $@

pipeline: install ## reproduce load -> prepare -> train -> evaluate (pulls cached outputs from the remote first)
	@dvc pull --quiet -r $(DVC_REMOTE) --allow-missing 2>/dev/null \
	  && echo "pipeline: pulled what remote '$(DVC_REMOTE)' has; dvc repro rebuilds anything else" \
	  || echo "pipeline: remote '$(DVC_REMOTE)' unreachable; rebuilding"
	dvc repro
	@dvc push --quiet -r $(DVC_REMOTE) 2>/dev/null || echo "pipeline: could not push to remote '$(DVC_REMOTE)' (outputs stay in the local cache)"
	@$(PY) -m iris_classifier.store
	@dvc metrics show

pull: install ## pull data and model from DVC_REMOTE (local | gdrive) and import the model into the store
	@$(PY) -m iris_classifier.remote check $(DVC_REMOTE)
	dvc pull -r $(DVC_REMOTE)
	@$(PY) -m iris_classifier.store

push: install ## push data and model to DVC_REMOTE
	@$(PY) -m iris_classifier.remote check $(DVC_REMOTE)
	dvc push -r $(DVC_REMOTE)

model-import: install ## import models/iris_classifier.bentomodel (from `dvc pull`) into the BentoML store
	@$(PY) -m iris_classifier.store

gdrive-folder: install ## set the Google Drive folder of the `gdrive` remote: make gdrive-folder FOLDER_ID=...
	@test -n "$(FOLDER_ID)" || { echo "gdrive-folder: set FOLDER_ID, e.g. make gdrive-folder FOLDER_ID=1AbC..."; exit 2; }
	dvc remote modify gdrive url gdrive://$(FOLDER_ID)
	@echo "gdrive-folder: remote 'gdrive' now points at folder $(FOLDER_ID); commit .dvc/config"

metrics: install ## show the metrics of the current run
	dvc metrics show

run: pipeline ## fresh clone -> pipeline -> model -> Bento -> API and UI on http://HOST:PORT
	@$(MAKE) --no-print-directory serve

bento: install ## build the Bento iris_classifier:<git commit> with the model's provenance labels
	@$(PY) -m iris_classifier.bento build

serve: bento ## serve this commit's Bento on HOST:PORT (default 127.0.0.1:3000)
	@echo "serve: API http://$(HOST):$(PORT)/  (OpenAPI page /, document /docs.json, model /model, metrics /metrics)  UI http://$(HOST):$(PORT)/ui/"
	bentoml serve $$($(PY) -m iris_classifier.bento tag) --host $(HOST) --port $(PORT)

image: bento ## build the Docker image iris-classifier:<git commit> (bentoml containerize, OCI labels)
	@$(PY) -m ops.image build

run-image: install ## replace this project's container (by name) with iris-classifier:<commit> on PORT; waits for /readyz
	@$(PY) -m ops.image run --port $(PORT)

stop-image: install ## remove this project's container (by name)
	@$(PY) -m ops.image stop

smoke: install ## smoke-test a running service at URL: a flower per species, /ui, /model names the commit
	@$(PY) -m ops.smoke --url $(or $(URL),$(API_URL)) --commit $(GIT_COMMIT)

docker-engine: ## start a Docker engine if none runs (CI machine: no bridge, host networking); stop with docker-engine-stop
	@ops/dockerd.sh start

docker-engine-stop: ## stop the Docker engine that docker-engine started (by its pid)
	@ops/dockerd.sh stop

demo: install ## the standalone Gradio demo on DEMO_PORT, calling the service at API_URL
	$(PY) -m demo.app --api-url $(API_URL) --port $(DEMO_PORT)

browser: ## install Debian's headless Chromium for the browser tests (needs root)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

bench: bento ## serving benchmark, contenders alternated (needs wrk): writes docs/benchmarks.md
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) -m bench.http_bench

loadtest: bento ## 60 s at 64 connections, 90% valid / 10% invalid, answers checked; LOADTEST_SECONDS=10 for short
	$(PY) -m bench.loadtest --seconds $(or $(LOADTEST_SECONDS),60)

bench-model: install ## in-process latency: sklearn pipeline vs the ONNX fast path, 1 and 1,000 rows
	@$(PY) -m bench.model_latency

test: install ## run the whole test suite (the container tests run separately: test-image)
	$(PY) -m pytest -m "not container" $(PYTEST_ARGS)

test-image: install ## test the running container (make run-image first): labels, non-root, health, restart
	IRIS_CONTAINER_URL=http://127.0.0.1:$(PORT) $(PY) -m pytest -m container -p no:cacheprovider tests/container

lint: install ## ruff lint and format check
	ruff check .
	ruff format --check .

secrets: install ## scan every tracked file for secrets against .secrets.baseline (detect-secrets)
	git ls-files -z | xargs -0 detect-secrets-hook --baseline .secrets.baseline
	@echo "secrets: no new secrets in tracked files"

lint-jenkinsfile: ## parse and lint the Jenkinsfile with npm-groovy-lint (pinned in ops/groovy-lint; needs node + java)
	cd ops/groovy-lint && npm ci --no-audit --no-fund --silent
	@# the linter leaves a CodeNarc server running: stop it whatever the verdict
	cd ops/groovy-lint && { npx --no-install npm-groovy-lint --failon error --output txt ../../Jenkinsfile; status=$$?; \
	  npx --no-install npm-groovy-lint --killserver >/dev/null 2>&1; exit $$status; }

format: install ## apply ruff format and safe fixes
	ruff check --fix .
	ruff format .

clean: ## remove generated outputs (keeps .venv, the DVC cache and remote)
	rm -rf data/raw data/prepared models reports .bentoml .pytest_cache
