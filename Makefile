# The README's commands. Every install step lives here, so a bare machine needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
# `make test` and `make mutate` pin OpenBLAS's kernel on x86-64: its dot products round
# differently on AVX-512 and AVX2 machines, and tests/data/relu_golden.json holds bits
# recorded with the Haswell kernels (they run on every x86-64 CPU with AVX2). Not for
# test-cluster: the emulated hosts' Ray processes must use the same kernel as the driver.
ifeq ($(shell uname -m),x86_64)
PIN_BLAS := OPENBLAS_CORETYPE=$(or $(OPENBLAS_CORETYPE),Haswell)
endif

.PHONY: install install-peers demo test test-cluster mutate bench reproduce clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Optional: torch (CPU build) and Ray Train for benchmarks/peers.py; `make bench` runs
# that benchmark only when they are installed.
install-peers: install
	$(PY) -m pip install --quiet -e '.[test,peers]'

demo: install
	$(VENV)/bin/ray-relu demo

test: install
	$(PIN_BLAS) $(PY) -m pytest -m "not cluster" --durations=15 tests

test-cluster: install
	bash cluster/install-deps.sh
	$(PY) -m pytest -m cluster -v -s tests

# Plant one-line bugs in the core modules one at a time; print those no test catches.
# Not part of `make test`: it reruns test selections dozens of times (20-35 minutes on 2 cores).
mutate: install
	$(PIN_BLAS) $(PY) tools/mutate.py

bench: install
	$(PY) -m benchmarks --quick

reproduce: install
	$(VENV)/bin/ray-relu reproduce --quick --out results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
