# Two commands set up and run everything: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export PYTHONWARNINGS ?= ignore

.PHONY: demo test test-fast ui schema sample-style clean venv

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# Test tools plus the [local] extra (torch CPU wheel, diffusers, peft) for the local-GPU tests on CPU.
$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev,local]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml $(VENV)/.base
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@
	# Pools with their own limits (the rest get concurrency.pools.default_limit): one job per GPU;
	# two page steps per cloud provider, each fanning out up to BOOKBUG_MAX_CONCURRENCY jobs.
	$(VENV)/bin/dagster instance concurrency set local_gpu 1 >/dev/null
	$(VENV)/bin/dagster instance concurrency set replicate 2 >/dev/null
	$(VENV)/bin/dagster instance concurrency set fal 2 >/dev/null

venv: $(VENV)/.base

demo: $(VENV)/.base $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m bookbug_assets.cli demo

test: $(VENV)/.test
	$(VENV)/bin/dg check defs
	$(PY) -m pytest -q

# Without the [local] extra (no torch): the local-GPU tests skip.
$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test-fast: $(VENV)/.dev
	$(VENV)/bin/dg check defs
	$(PY) -m pytest -q -m "not slow and not local_gpu"

ui: $(VENV)/.base $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -m bookbug_assets.definitions -h 127.0.0.1 -p $${PORT:-3000}

schema: $(VENV)/.base
	$(PY) -m bookbug_assets.stories.schema > schemas/story.schema.json

sample-style: $(VENV)/.base
	$(PY) scripts/make_sample_style.py data/styles/soft-meadow

clean:
	rm -rf $(VENV) $(DAGSTER_HOME) data/outputs
