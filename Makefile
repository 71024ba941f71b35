# Serinus developer commands. Every target installs what it needs into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= http1_request codec_decode upstream_response

.DEFAULT_GOAL := help

.PHONY: help venv system-deps kube-bins test unit integration e2e fuzz lint format typecheck bench bench-fetch bench-operator demo clean
.PHONY: crds chart-files images

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install serinus with its dev dependencies

system-deps: ## Install what the tests run that pip cannot put in .venv: prometheus, promtool, gcc, docker-registry, redis-server, npm (apt); moto's S3, mlflow (venvs), fake-gcs-server (Go), Azurite (npm)
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the Debian package prometheus (prometheus + promtool)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; \
	else \
		echo "missing prometheus/promtool: run 'sudo apt-get install prometheus'" >&2; exit 1; \
	fi
	@if command -v docker-registry >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing docker-registry (the OCI registry the model-source tests push to)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry; \
	else \
		echo "missing docker-registry: run 'sudo apt-get install docker-registry'" >&2; exit 1; \
	fi
	@if command -v redis-server >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server (the router's shared prediction log is tested against it)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; \
	else \
		echo "missing redis-server: run 'sudo apt-get install redis-server'" >&2; exit 1; \
	fi
	@if command -v npm >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing nodejs and npm (Azurite, the Azure Blob Storage the model-source tests use, is an npm package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; \
	else \
		echo "missing npm: run 'sudo apt-get install nodejs npm'" >&2; exit 1; \
	fi
	@bash hack/servers/install.sh >/dev/null
	@if command -v cc >/dev/null || command -v gcc >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing gcc (the bench's load generator, bench/openloop.c, is tested)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev; \
	else \
		echo "missing a C compiler: run 'sudo apt-get install gcc'" >&2; exit 1; \
	fi

kube-bins: ## Build etcd, kube-apiserver, kube-controller-manager from Go modules (cached outside the repo)
	@bash hack/kube/build.sh >/dev/null && bash hack/kube/gateway-api.sh >/dev/null && bash hack/kstatus/build.sh >/dev/null; rc=$$?; \
	if [ $$rc = 3 ]; then \
		echo "WARNING: no Go toolchain: the tests on a real Kubernetes control plane will be SKIPPED." >&2; \
		echo "         Install Go >= 1.26 (https://go.dev/dl/, into /usr/local/go) and run make test again." >&2; \
	elif [ $$rc != 0 ]; then exit $$rc; fi

test: $(STAMP) system-deps kube-bins ## Lint, type-check and run unit + integration tests (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: $(STAMP) ## Run only the unit tests
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

integration: $(STAMP) system-deps kube-bins ## Run only the integration tests (real processes on 127.0.0.1)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

e2e: $(STAMP) system-deps kube-bins ## Install and roll models out end to end on a real control plane (~1 min)
	@$(BIN)/python -m pytest -m e2e $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "make e2e: no end-to-end test ran (none collected or all deselected)" >&2; exit 1; fi; \
	exit $$rc

fuzz: $(STAMP) ## Fuzz each of FUZZ_TARGETS for FUZZ_SECONDS (600); findings in .fuzz/TARGET/ (docs/testing.md)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/$$t/corpus || exit 1; \
		echo "fuzzing $$t for $(FUZZ_SECONDS)s (new inputs: .fuzz/$$t/corpus)"; \
		$(BIN)/python tests/fuzz/$$t.py -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
			-timeout=20 -dict=tests/fuzz/$$t.dict \
			-artifact_prefix=.fuzz/$$t/ .fuzz/$$t/corpus tests/fuzz/corpus/$$t \
			2> .fuzz/$$t/log || { tail -n 60 .fuzz/$$t/log; \
			echo "fuzz: $$t found a problem: the input is .fuzz/$$t/crash-* (log: .fuzz/$$t/log)" >&2; \
			exit 1; }; \
		grep -E '^#[0-9]+[[:space:]]+DONE' .fuzz/$$t/log; \
	done

lint: $(STAMP) ## ruff lint and format check, and the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP) ## Apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP) ## mypy --strict on the packages
	$(BIN)/mypy

demo: $(STAMP) system-deps ## Play a rollout locally: canary promoted, shadow rolled back, blue-green
	PYTHONPATH=demo $(BIN)/python -m serinus_demo

bench: $(STAMP) ## Benchmark serinus serve vs MLServer, KServe, a bare floor; the router vs nginx; the cost of drift monitoring
	bash bench/run.sh

bench-fetch: $(STAMP) system-deps ## Fetching a 512 MiB model: obstore vs fsspec (s3fs, gcsfs), parts vs one stream, on 127.0.0.1 (~4 min)
	$(BIN)/python bench/model_fetch.py

bench-operator: $(STAMP) kube-bins ## The operator with 100 and 1,000 ModelDeployments on the real control plane (BENCHMARKS.md)
	$(BIN)/python bench/operator_scale.py $(BENCH_OPERATOR_ARGS)
	$(BIN)/python bench/kube_client.py

CHART := charts/serinus
IMAGE_PREFIX ?= ghcr.io/serinus-dev/serinus-
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

crds: chart-files ## Copy crds/ into the chart and the kustomize install (tests check the copies)

chart-files: ## Copy the CRD, dashboards and alerts into the Helm chart and manifests/install
	mkdir -p $(CHART)/crds $(CHART)/dashboards $(CHART)/alerts
	cp crds/modeldeployment.yaml $(CHART)/crds/modeldeployment.yaml
	cp crds/modeldeployment.yaml manifests/install/crd.yaml
	rm -f $(CHART)/dashboards/*.json $(CHART)/alerts/*.yaml
	cp manifests/dashboards/*.json $(CHART)/dashboards/
	cp manifests/alerts/*.yaml $(CHART)/alerts/

images: ## Build the operator and serving images, two targets of ./Dockerfile (needs a Docker engine)
	@if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then \
		echo "no Docker engine here: cannot build images (the tests lint the Dockerfile instead)" >&2; \
		exit 1; \
	fi
	docker build --target operator -t $(IMAGE_PREFIX)operator:$(IMAGE_TAG) .
	docker build --target serving -t $(IMAGE_PREFIX)serving:$(IMAGE_TAG) .

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .bench .fuzz
