# The one entry point for people, CI and Jenkins. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
# The stamp names what was installed: the lock and the venv's .pth hook (iris_classifier/project/environment.py).
# By content, not mtime, so a copy of the project run with this venv (VENV=...) never reinstalls it.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock iris_classifier/project/environment.py | sha1sum | cut -c1-12)

PORT ?= 3000
GRPC_PORT ?= 3001
HOST ?= 127.0.0.1
API_URL ?= http://127.0.0.1:$(PORT)
DEMO_PORT ?= 7860
DVC_REMOTE ?= local
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
PYTEST_ARGS ?=
SHADOW ?= $(IRIS_SHADOW)

# Everything runs from the project's venv, whose .pth hook sets the BentoML home (.bentoml/) and telemetry off.
export PATH := $(VENV)/bin:$(PATH)
export UV_NATIVE_TLS := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install pipeline pull push model-import run serve test lint format bento image run-image smoke \
        demo bench bench-batch-transport mlserver-venv grpc-stubs bench-model loadtest gdrive-folder metrics clean browser stop-image docker-engine docker-engine-stop lint-jenkinsfile test-image test-fast secrets docs lock-upgrade lint-renovate

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv from requirements.lock (Python 3.11)

$(STAMP):
	@$(PYTHON_SYSTEM) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required; found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip sync --quiet --python $(PY) requirements.lock
	@# read by every Python start in the venv: the package importable without a build step, and the
	@# project's defaults (BentoML store in .bentoml/, telemetry off); see iris_classifier/project/environment.py
	@$(PY) -m iris_classifier.project.environment > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/iris_classifier_project.pth
	$(VENV)/bin/uv pip check --python $(PY)
	@rm -f $(VENV)/.installed-* && touch $@

pipeline: install ## reproduce load -> prepare -> train -> evaluate (pulls cached outputs from DVC_REMOTE first)
	@# Only the default remote `local` may fall back to rebuilding; any other remote failing stops the build here.
	@$(PY) -m iris_classifier.data.remote pull $(DVC_REMOTE)
	dvc repro
	@$(PY) -m iris_classifier.data.remote push $(DVC_REMOTE)
	@$(PY) -m iris_classifier.model.store
	@dvc metrics show

pull: install ## pull data and model from DVC_REMOTE (local | gdrive) and import the model into the store
	@$(PY) -m iris_classifier.data.remote check $(DVC_REMOTE)
	dvc pull -r $(DVC_REMOTE)
	@$(PY) -m iris_classifier.model.store

push: install ## push data and model to DVC_REMOTE
	@$(PY) -m iris_classifier.data.remote check $(DVC_REMOTE)
	dvc push -r $(DVC_REMOTE)

model-import: install ## import models/iris_classifier.bentomodel (from `dvc pull`) into the BentoML store
	@$(PY) -m iris_classifier.model.store

gdrive-folder: install ## set the Google Drive folder of the `gdrive` remote: make gdrive-folder FOLDER_ID=...
	@test -n "$(FOLDER_ID)" || { echo "gdrive-folder: set FOLDER_ID, e.g. make gdrive-folder FOLDER_ID=1AbC..."; exit 2; }
	dvc remote modify gdrive url gdrive://$(FOLDER_ID)
	@echo "gdrive-folder: remote 'gdrive' now points at folder $(FOLDER_ID); commit .dvc/config"

metrics: install ## show the metrics of the current run
	dvc metrics show

run: pipeline ## fresh clone -> pipeline -> model -> Bento -> API and UI on http://HOST:PORT
	@$(MAKE) --no-print-directory serve

bento: install ## build the Bento iris_classifier:<git commit> with the model's provenance labels
	@$(PY) -m iris_classifier.registry.bento build

serve: bento ## serve this commit's Bento on HOST:PORT (default 127.0.0.1:3000), gRPC on HOST:GRPC_PORT (3001); SHADOW=staging|vX.Y.Z: a shadow model beside it
	@echo "serve: API http://$(HOST):$(PORT)/  (OpenAPI page /, document /docs.json, model /model, metrics /metrics)  UI http://$(HOST):$(PORT)/ui/  gRPC $(HOST):$(GRPC_PORT)"
	@# SHADOW (or IRIS_SHADOW) is resolved here, where the registry is, into the model's tag (docs/shadow.md)
	@shadow="$$($(PY) -m iris_classifier.registry.stage_model serve-env "$(SHADOW)")" && \
	  eval "exec env $$shadow IRIS_GRPC_HOST=$(HOST) IRIS_GRPC_PORT=$(GRPC_PORT) bentoml serve $$($(PY) -m iris_classifier.registry.bento tag) --host $(HOST) --port $(PORT)"

image: install ## build the Docker image iris-classifier:<git commit> (bentoml containerize, OCI labels); SHADOW=staging|x.y.z: <commit>-shadow-vX.Y.Z, carrying that model too
	@$(PY) -m ops.image build $(if $(SHADOW),--shadow "$(SHADOW)")

run-image: install ## replace this project's container (by name) with iris-classifier:<commit> on PORT (gRPC on GRPC_PORT); waits for /readyz
	@$(PY) -m ops.image run --port $(PORT) --grpc-port $(GRPC_PORT)

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

browser: install ## a headless Chromium for the browser tests: Debian's if there, else Playwright's (no root), else apt as root
	@$(PY) -m ops.browser install

bench: bento ## serving benchmark, contenders alternated (needs wrk): writes docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "bench: wrk is missing; an admin installs it once: apt-get install -y wrk"; exit 1; }
	$(PY) -m bench.http_bench

bench-batch-transport: install ## 10,000 flowers over gRPC raw vs REST binary, alternated on one source service (~2 min; BENCH_ARGS=--no-prediction-log)
	$(PY) -m bench.batch_transport $(BENCH_ARGS)

loadtest: bento ## 60 s at 64 connections, 90% valid / 10% invalid, answers checked; LOADTEST_SECONDS=10 for short
	$(PY) -m bench.loadtest --seconds $(or $(LOADTEST_SECONDS),60)

mlserver-venv: install ## MLServer + its scikit-learn runtime in .venv-mlserver (bench/mlserver/requirements.lock): make bench's contender
	$(PY) -m bench.mlserver_contender install

grpc-stubs: install ## regenerate the committed gRPC stubs of the Open Inference Protocol from iris_classifier/serving/v2/proto/*.proto
	$(PY) -m ops.grpc_stubs

bench-model: install ## in-process latency: sklearn pipeline vs the ONNX fast path, 1 and 1,000 rows
	@$(PY) -m bench.model_latency

test: install ## the whole suite on one xdist worker per core, its 25 slowest listed (PYTEST_WORKERS=0: one process; containers: test-image)
	@# Bytecode: with PYTHONDONTWRITEBYTECODE=1 (above) every dvc, bentoml and stage process the tests start would compile
	@# what it imports again (1-3 s of CPU each). Here Python writes it instead, the first time a module is imported, into
	@# a tree of its own (PYTHONPYCACHEPREFIX: no __pycache__ in the project or its copies) that later runs reuse. Only
	@# what the suite imports is compiled: compiling the whole venv beforehand cost ~45 s of CPU on a fresh clone.
	@# The entries of earlier runs' throwaway copies (pytest's temp folders) are dropped first.
	@rm -rf "$(VENV)/.pycache$$($(PY) -c 'import getpass, tempfile; print(f"{tempfile.gettempdir()}/pytest-of-{getpass.getuser()}")')"
	@# --dist loadgroup: tests sharing a server, the project's BentoML store or the Docker engine run on one worker;
	@# --reproduce-first: the pipeline is reproduced while the workers start (both in tests/conftest.py)
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(VENV)/.pycache \
	  $(PY) -m pytest -m "not container and not spark and not publish" -n $(or $(PYTEST_WORKERS),auto) --dist loadgroup --reproduce-first --durations=25 \
	  $(PYTEST_ARGS)

test-fast: install ## the fast tier: no pipeline run, no server, no browser (schema, validation, middlewares, files...)
	@# bytecode as for make test (above), in the same tree
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(VENV)/.pycache \
	  $(PY) -m pytest -m "not slow and not container" -n $(or $(PYTEST_WORKERS),auto) --dist loadgroup --durations=10 $(PYTEST_ARGS)

test-image: install ## test the running container (make run-image first): labels, non-root, health, restart
	IRIS_CONTAINER_URL=http://127.0.0.1:$(PORT) IRIS_CONTAINER_GRPC=127.0.0.1:$(GRPC_PORT) $(PY) -m pytest -m container -p no:cacheprovider tests/container

lint: install ## ruff lint and format check; the package's layers and no import cycles (lint-imports, pyproject.toml)
	ruff check .
	ruff format --check .
	lint-imports --no-cache

secrets: install ## scan every tracked file for secrets not listed in .secrets.baseline (detect-secrets; line moves are not findings)
	$(PY) -m ops.secrets_check

lint-jenkinsfile: ## parse and lint Jenkinsfile, Jenkinsfile.drift, .retrain, .promote and .score with npm-groovy-lint (pinned in ops/groovy-lint; needs node + java)
	cd ops/groovy-lint && npm ci --no-audit --no-fund --silent
	@# the linter leaves a CodeNarc server running: stop it whatever the verdict
	@# one run for the five files: the CodeNarc server starts once (~37 s instead of ~86 s)
	cd ops/groovy-lint && { status=0; \
	  npx --no-install npm-groovy-lint --failon error --output txt ../../Jenkinsfile ../../Jenkinsfile.drift ../../Jenkinsfile.retrain ../../Jenkinsfile.promote ../../Jenkinsfile.score \
	    || status=1; \
	  npx --no-install npm-groovy-lint --killserver >/dev/null 2>&1; exit $$status; }

lint-renovate: ## validate renovate.json with Renovate's own validator, strictly (pinned in ops/renovate; needs node + npm)
	cd ops/renovate && npm ci --no-audit --no-fund --silent
	@# as repository config (renovate.json found in the project root); re2, an optional native module, is not needed
	cd $(CURDIR) && RENOVATE_X_IGNORE_RE2=true ops/renovate/node_modules/.bin/renovate-config-validator --strict

docs: install ## build the docs site strictly (mkdocs, Material) into build/site
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir build/site

lock-upgrade: install ## re-lock every lock file (ops/locks.py) on the newest versions its .in allows, reinstall, then make test-fast
	$(PY) -m ops.locks upgrade
	@git --no-pager diff --stat -- '*.lock'
	@$(MAKE) --no-print-directory install test-fast

format: install ## apply ruff format and safe fixes
	ruff check --fix .
	ruff format .

clean: ## remove generated, untracked outputs (keeps tracked files, .venv, the DVC cache and remote)
	git clean -fdX -- data models reports .bentoml .pytest_cache test-artifacts build

# --- Monitoring: Prometheus rules, Grafana dashboard, prediction log, drift ---------------------
.PHONY: drift monitoring-check bench-log bench-shadow dashboard-shot
DRIFT_WINDOW ?= 500
DRIFT_MIN_FLOWERS ?= 50
DRIFT_LOG_DIR ?= $(or $(IRIS_MONITOR_DIR),$(CURDIR)/.monitor)
DRIFT_HTML ?= $(CURDIR)/reports/drift.html
DRIFT_JSON ?= $(CURDIR)/reports/drift.json

drift: install ## last DRIFT_WINDOW logged flowers vs the training split (Evidently): reports/drift.{html,json}; check exit 0 ok, 1 drift, 2 too few
	$(PY) -m iris_classifier.monitoring.drift --log-dir $(DRIFT_LOG_DIR) --window $(DRIFT_WINDOW) --min-flowers $(DRIFT_MIN_FLOWERS) \
	  --html $(DRIFT_HTML) --json $(DRIFT_JSON)

monitoring-check: ## promtool: check the Prometheus config and rules, run the alert unit tests (needs: apt-get install -y prometheus)
	@command -v promtool >/dev/null || { echo "monitoring-check: promtool is missing: apt-get install -y prometheus"; exit 2; }
	cd monitoring && promtool check config prometheus.yml && promtool check rules rules/*.yml && promtool test rules tests/*.yml

bench-log: bento ## what the prediction log costs /classify: log on vs off, alternated (needs wrk); a section of docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "bench-log: wrk is missing; an admin installs it once: apt-get install -y wrk"; exit 1; }
	$(PY) -m bench.prediction_log

bench-shadow: bento ## what a shadow model costs clients: /classify req/s + p99 at 32 connections, batch flowers/s, shadow on vs off alternated (needs wrk); a section of docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "bench-shadow: wrk is missing; an admin installs it once: apt-get install -y wrk"; exit 1; }
	$(PY) -m bench.shadow

bench-compare: install ## this commit vs BASELINE (a git ref), each served from its own source, alternated (needs wrk): a section of docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "bench-compare: wrk is missing; an admin installs it once: apt-get install -y wrk"; exit 1; }
	@test -n "$(BASELINE)" || { echo "bench-compare: name the baseline: make bench-compare BASELINE=<commit or tag> [CONTENDERS='HEAD HEAD,IRIS_PREDICTION_LOG=0']"; exit 2; }
	$(PY) -m bench.compare $(BASELINE) $(or $(CONTENDERS),HEAD)

dashboard-shot: install ## serve + Prometheus + traffic + drift check, then docs/img/dashboard.png and drift-report.png (needs prometheus, chromium)
	$(PY) -m ops.monitoring_shots

# --- The feedback loop: labels from /feedback -> live accuracy -> retrain -> staging only if better ---
.PHONY: retrain retrain-push feedback-report shadow-report
FEEDBACK_JSON ?= $(CURDIR)/reports/feedback-live.json

retrain: install ## labels + prediction log (IRIS_MONITOR_DIR) -> new data version -> challenger vs production -> staging if better: reports/retrain.{json,html}
	$(PY) -m iris_classifier.retraining.job

shadow-report: install ## shadow log + labels (IRIS_MONITOR_DIR) -> challenger vs champion on live flowers: reports/shadow.{json,html} [VERSION=x.y.z]; exit 0 pass, 1 fail, 2 insufficient
	$(PY) -m iris_classifier.retraining.shadow_report $(if $(VERSION),--version "$(VERSION)")

retrain-push: install ## after a promotion (reports/retrain.json): push its commit to BRANCH and its release and staging tags
	@$(PY) -m iris_classifier.retraining.job --push "$(BRANCH)"

feedback-report: install ## live accuracy and confusion matrix from the labels sent to /feedback (IRIS_MONITOR_DIR): reports/feedback-live.json
	$(PY) -m iris_classifier.monitoring.feedback --json $(FEEDBACK_JSON)

# --- Model registry (GTO tags on the dvc.yaml artifact iris-classifier; stages declared in .gto) ---
.PHONY: release promote registry which registry-ref publish-image

release: install ## register this commit's model: make release VERSION=x.y.z (clean tree, reproduced, gate passed; PUSH=1 pushes the tag)
	@$(PY) -m ops.registry release "$(VERSION)" $(if $(PUSH),--push)

promote: install ## assign a stage: make promote VERSION=x.y.z STAGE=staging|production (production: a passing make shadow-report, or FORCE=1 REASON="..."; PUSH=1 pushes the tag)
	@$(PY) -m ops.registry promote "$(VERSION)" "$(STAGE)" $(if $(PUSH),--push) $(if $(FORCE),--force --reason "$(REASON)")

registry: install ## the model registry: versions and what each stage holds (gto show)
	@$(PY) -m ops.registry show

which: install ## the version and commit a stage holds: make which STAGE=production
	@$(PY) -m ops.registry which "$(STAGE)"

registry-ref: install ## for CI: what REF (a pushed tag) means to the registry: "EVENT VERSION STAGE"
	@$(PY) -m ops.registry check-ref "$(REF)"

publish-image: install ## tag the released image vX.Y.Z; with REGISTRY: push (signed with SIGN_KEY), digest record, SBOM: make publish-image VERSION=x.y.z [REGISTRY=host:port] [SIGN_KEY=key.asc]
	@REGISTRY="$(REGISTRY)" SIGN_KEY="$(SIGN_KEY)" SIGSTORE="$(SIGSTORE)" IMAGE_RECORD="$(IMAGE_RECORD)" \
	  $(PY) -m ops.registry publish "$(VERSION)"

# --- Lean image (issue #12): where the image's bytes and start-up seconds go, and the cold-start benchmark.
.PHONY: image-report bench-start

image-report: install ## largest layers and packages of IMAGE_TAG (default: this commit's image), import times, model load, server start
	@$(PY) -m ops.image_report $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))

bench-start: install ## size + cold start (docker run -> /readyz 200) of this commit's image vs BASELINE_IMAGE, alternated: docs/benchmarks.md
	$(PY) -m bench.start_bench $(if $(BASELINE_IMAGE),--baseline $(BASELINE_IMAGE)) $(if $(IMAGE_TAG),--candidate $(IMAGE_TAG))

# --- Publishing (docs/publishing.md): a real OCI registry, push + digest record, SBOM, GPG signature and policy ---
.PHONY: registry-up registry-down sbom verify-image test-publish
REGISTRY_DIR ?= $(CURDIR)/build/registry
IMAGE_RECORD ?= $(CURDIR)/build/image.json
# Where signatures are written and read (a lookaside); on a Jenkins agent a folder that outlives the workspace.
SIGSTORE ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/containers/sigstore

registry-up: install ## a real OCI registry (Distribution) on a free loopback port, storage in build/registry; prints REGISTRY=...
	@$(PY) -m ops.image_registry up --dir $(REGISTRY_DIR) $(if $(REGISTRY_PORT),--port $(REGISTRY_PORT))

registry-down: install ## stop the registry that registry-up started (by the pid it recorded in build/registry)
	@$(PY) -m ops.image_registry down --dir $(REGISTRY_DIR)

sbom: install ## CycloneDX JSON of the image's Python environment (IMAGE_TAG, default this commit's image): build/sbom.cdx.json
	@IMAGE_RECORD="$(IMAGE_RECORD)" $(PY) -m ops.publish sbom $(if $(IMAGE_TAG),--image $(IMAGE_TAG))

verify-image: install ## check a published image's GPG signature: make verify-image REF=host:port/iris-classifier:vX.Y.Z SIGN_PUBKEY=key.pub
	@test -n "$(REF)" || { echo "verify-image: name the image: make verify-image REF=<registry>/iris-classifier:<tag or @digest> SIGN_PUBKEY=<file>"; exit 2; }
	@SIGSTORE="$(SIGSTORE)" $(PY) -m ops.publish verify "$(REF)" --pubkey "$(SIGN_PUBKEY)"

test-publish: install ## real registry: push, digest pin, signature policy, SBOM, pull by digest + pod + smoke (make image first)
	$(PY) -m pytest -p no:cacheprovider tests/publish $(PYTEST_ARGS)

# --- Kubernetes (deploy/k8s): render, schema and policy checks, the pod's constraints on the image, a rollout ---
.PHONY: k8s-render k8s-check k8s-pod-check rollout-test k8s-deploy deploy-shadow
K8S_ENV = $(or $(ENV),staging)
K8S_IMAGE_ARGS = $(if $(IMAGE_TAG),--tag $(IMAGE_TAG)) $(if $(VERSION),--version $(VERSION)) \
                 $(if $(REGISTRY),--registry $(REGISTRY)) --record $(IMAGE_RECORD) $(if $(SHADOW),--shadow "$(SHADOW)")

k8s-render: install ## render deploy/k8s/overlays/ENV to build/k8s/ENV.yaml [IMAGE_TAG=<commit> | VERSION=x.y.z] [REGISTRY=...]; by digest when published
	@$(PY) -m ops.k8s render --env $(K8S_ENV) $(K8S_IMAGE_ARGS) $(if $(K8S_OUT),--out-dir $(K8S_OUT))

k8s-check: install ## render both envs; strict Kubernetes 1.31 schema check; checkov policy scan (installs .venv-scan)
	@for env in staging production; do $(PY) -m ops.k8s render --env $$env $(K8S_IMAGE_ARGS) || exit 1; done
	@$(PY) -m ops.k8s validate build/k8s/staging.yaml build/k8s/production.yaml
	@$(PY) -m ops.k8s scan build/k8s/staging.yaml build/k8s/production.yaml

k8s-pod-check: install ## run this commit's image under the production pod's constraints: ready, classifies, metrics (make image first)
	@$(PY) -m ops.k8s pod-check --env production

rollout-test: install ## two containers behind HAProxy under load, both replaced: zero failed requests (make image first; needs haproxy)
	@$(PY) -m ops.rollout

k8s-deploy: install ## (Jenkins Deploy; KUBECONFIG) check the signature (SIGN_PUBKEY), render ENV by digest, apply, rollout, smoke; undo on failure
	@SIGSTORE="$(SIGSTORE)" $(PY) -m ops.k8s deploy --env $(K8S_ENV) $(K8S_IMAGE_ARGS) --pubkey "$(SIGN_PUBKEY)"

deploy-shadow: install ## (Jenkins retrain; KUBECONFIG) production's pods shadow VERSION=x.y.z: production's image carrying it, built at production's commit, published (REGISTRY, SIGN_KEY), deployed (SIGN_PUBKEY); DRY_RUN=1: the plan and build/k8s/production.yaml only
	@SIGSTORE="$(SIGSTORE)" REGISTRY="$(REGISTRY)" SIGN_KEY="$(SIGN_KEY)" SIGN_PUBKEY="$(SIGN_PUBKEY)" \
	  $(PY) -m ops.shadow_deploy "$(VERSION)" --dvc-remote $(DVC_REMOTE) --record $(IMAGE_RECORD) \
	  $(if $(K8S_OUT),--out-dir $(K8S_OUT)) $(if $(DRY_RUN),--dry-run)

# --- Overload (issue #25): memory per batch in flight, and the flood at the production pod's own limits ---
.PHONY: bench-memory flood-test
FLOOD_CLIENTS ?= 48
FLOOD_SECONDS ?= 20

bench-memory: install ## idle RSS and RSS per 10,000-flower batch in flight, in this commit's image under the pod's limits (make image first; BASELINE_IMAGE=... beside it): docs/benchmarks.md
	$(PY) -m bench.memory --record $(if $(BASELINE_IMAGE),--baseline $(BASELINE_IMAGE))

flood-test: install ## the image under the production pod's limits, flooded with 10,000-flower batches + a light /classify client: never OOM-killed, sheds with 503 + Retry-After (make image first; the full one: FLOOD_CLIENTS=320 FLOOD_SECONDS=60 FLOOD_OFF=1)
	FLOOD_CLIENTS=$(FLOOD_CLIENTS) FLOOD_SECONDS=$(FLOOD_SECONDS) FLOOD_OFF=$(FLOOD_OFF) \
	  $(PY) -m pytest -p no:cacheprovider -s tests/overload/test_flood.py $(PYTEST_ARGS)

# --- Offline scoring on Apache Spark (issue #34, docs/scoring.md): PySpark in .venv-spark (requirements-spark.lock) ---
.PHONY: score spark-up spark-down bench-score test-spark
FORMAT ?= parquet
INPUT_FORMAT ?= auto
SPARK_MASTER ?= local[*]

score: install ## score a file on Spark: make score INPUT=flowers.csv OUTPUT=dir [FORMAT=parquet|csv] [STAGE=production | VERSION=x.y.z] [SPARK_MASTER=spark://...] [SPARK_CONF="key=value ..."]
	@DVC_REMOTE=$(DVC_REMOTE) $(PY) -m iris_classifier.scoring.job --input "$(INPUT)" --output "$(OUTPUT)" --format $(FORMAT) \
	  --input-format $(INPUT_FORMAT) --stage "$(STAGE)" --version "$(VERSION)" --master "$(SPARK_MASTER)" \
	  $(foreach setting,$(SPARK_CONF),--conf "$(setting)")

spark-up: install ## a Spark standalone master + worker on 127.0.0.1 (pids in build/spark); last line SPARK_MASTER=spark://...
	@$(PY) -m iris_classifier.scoring.cluster up

spark-down: install ## stop the master and worker spark-up started (by their recorded pids)
	@$(PY) -m iris_classifier.scoring.cluster down

bench-score: bento ## Spark scoring, 1M and 10M rows, local and standalone, vs one Python process and /classify_batch over HTTP: docs/benchmarks.md
	$(PY) -m bench.score_bench $(BENCH_SCORE_ARGS)

test-spark: install ## the Spark tests (real Spark: local mode and a standalone cluster; needs Java 17+)
	$(PY) -m pytest -p no:cacheprovider -n0 -m spark --durations=10 $(PYTEST_ARGS)
