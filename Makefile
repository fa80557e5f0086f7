# The two commands: `make demo` and `make test`. Both create .venv and install into it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TIR := $(VENV)/bin/tir
DEMO ?= demo

# Freeing and re-touching large memory is slow on some machines without these glibc settings.
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-slow test-all bench bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt requirements-spacy-model.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,stanza,serve]'
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-spacy-model.txt
	touch $@

demo: install
	$(PY) -m tir.demo --out $(DEMO)

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

test-all: install
	$(PY) -m pytest -q

bench: install
	@for script in benchmarks/*.py; do [ $$script = benchmarks/gpu.py ] && continue; echo "== $$script"; $(PY) $$script || exit 1; done

bench-gpu: install
	$(PY) benchmarks/gpu.py --out bench-gpu.json

clean:
	rm -rf $(DEMO) build dist *.egg-info .pytest_cache
