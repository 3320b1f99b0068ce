# qm-ingest — every target installs what it needs first (a fresh clone needs nothing else).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCKS := pyproject.toml requirements.lock requirements-dev.lock processor/devtools/emulator/kinesis-mock/package-lock.json tools/package-lock.json
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: lock audit install xvfb system-packages demo demo-screen test lint stack unit e2e faults bench image image-build image-run image-check clean help

help:
	@echo "make demo    - embedded AWS emulator + service + simulated contact centre, prints QM contacts"
	@echo "make test    - lint, type check and the whole test suite (starts its own emulator)"
	@echo "make faults  - the full fault suite (kill -9, outage, resharding, ...)"
	@echo "make bench   - benchmarks, each next to a baseline measured in the same run"
	@echo "make image   - the container image (needs a Docker engine)"
	@echo "make lock    - regenerate requirements*.lock from pyproject.toml (UPGRADE=--upgrade for newer versions)"
	@echo "make audit   - the locked versions against PyPI's advisories (AUDIT_ARGS='-s osv' for OSV); fails on any it cannot check"
	@echo "make image-build - the image with buildah on a debootstrap base (root; no Docker engine needed)"
	@echo "make image-run - build it, run it with podman against the embedded emulator, check import, health, user, SIGTERM"
	@echo "make image-check - what can be checked of the image without Docker (lint, parse, stage 1 in a venv)"
	@echo "make stack   - regenerate deploy/*.yaml (CloudFormation: the stack, ECS) from bootstrap's specifications"

$(STAMP): $(LOCKS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	# Every Python package at its locked version and hash, the build tools included: the
	# builds (amazon_kclpy's downloads the KCL jars from Maven Central into the package, and
	# the project's own) run without isolation, so nothing unhashed is fetched.
	# First the locked pip itself (hash-checked): the venv's bundled pip (23.2) takes an extra
	# (pip-audit's CacheControl[filecache]) from the index's newest release, which the lock
	# does not pin, and refuses the whole lock.
	sed -n '/^pip==/,/# via/p' requirements-dev.lock > $(VENV)/pip.lock
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(VENV)/pip.lock
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@$(BIN)/python -c 'from processor.adapters.kcl.daemon import jars_dir; from processor.platform.settings import Settings; print("KCL jars:", jars_dir(Settings()))'
	# kinesis-mock (pure Node) for the resharding scenarios.
	npm ci --prefix processor/devtools/emulator/kinesis-mock --silent --no-audit --no-fund
	# dclint (compose linter, and the compose-spec schema the tests validate against).
	npm ci --prefix tools --silent --no-audit --no-fund
	# tini: the image's PID 1; the tests run `qm-ingest run` under it to check SIGTERM forwarding.
	@command -v tini >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends tini)
	@java -version 2>&1 | head -1 || (echo "Java 17+ is required for the KCL daemon" && exit 1)
	$(MAKE) --no-print-directory xvfb
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# Debian packages, each only when its binary is missing: headless Chromium and its
# WebDriver for the console's browser tests and screenshots.
system-packages:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core; \
	fi

install: system-packages $(STAMP)

# Xvfb: a virtual X display for qm-desktop's real screen-capture tests and benchmark.
xvfb:
	@command -v Xvfb >/dev/null || { \
		echo "installing Xvfb (Debian package xvfb)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends xvfb; }

demo: install
	$(BIN)/qm-ingest demo

demo-screen: install
	$(BIN)/qm-ingest screen demo

lint: install
	$(BIN)/ruff check processor tests bench tools/*.py
	$(BIN)/ruff format --check processor tests bench tools/*.py
	$(BIN)/mypy
	$(BIN)/cfn-lint deploy/qm-ingest.yaml deploy/qm-ingest-ecs.yaml

# The CloudFormation template, generated from bootstrap's specifications (default names).
stack: install
	$(BIN)/python -m processor.ops.stack --defaults > deploy/qm-ingest.yaml
	$(BIN)/python -m processor.ops.stack --defaults --ecs > deploy/qm-ingest-ecs.yaml

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# Test processes side by side (each with its own emulator); TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 2

test: install xvfb lint
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist load --maxschedchunk 2 $(PYTEST_ARGS)

# The whole fault suite; its figures (docs/reliability.md's table) go to .qm-local/.
faults: install
	FAULTS_REPORT=.qm-local/faults-report.json $(BIN)/pytest tests/faults $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

image:
	docker build -t qm-ingest:latest .

# No Docker engine: buildah on a debootstrap base, then the image run for real with podman
# against the embedded emulator (root and Debian's packages; not part of `make test`).
image-build:
	tools/build_image.sh

image-run: install image-build
	STORAGE_DRIVER=vfs $(BIN)/python tools/container_check.py

image-check: install
	$(BIN)/pytest -m slow tests/unit/test_container.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .qm-local .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# The hashed lock files. The dev lock resolves the project with its dev extra and its build
# tools; the image's lock resolves the runtime dependencies inside the dev lock's versions,
# so the tests run exactly what the image ships.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(UPGRADE)
# The build tools come from pyproject.toml's build-system table (the builds run without isolation).
BUILD_REQUIRES = $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
lock: $(STAMP)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - --extra dev -o requirements-dev.lock
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - -c requirements-dev.lock -o requirements.lock

audit: $(STAMP)
	$(BIN)/pip-audit --strict --disable-pip --require-hashes --progress-spinner off -r requirements-dev.lock $(AUDIT_ARGS)
