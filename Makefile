# One command per job. Everything lands in .venv (created when missing).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install test test-all demo compare bench wheel bazel-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python requirements.txt requirements-nodeps.txt constraints.txt setup.py
	$(PIP) install --quiet -c constraints.txt -r requirements.txt
	$(PIP) install --quiet --no-deps -c constraints.txt -r requirements-nodeps.txt
	$(PIP) install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The test suite (fast tests only; 720-954 s on 2 cores, measured four times in
# one evening as the machine slowed; 843 s before issue 25 on a fresh clone).
test: $(STAMP)
	$(PY) -m pytest -q tests

# Also the slow tests.
test-all: $(STAMP)
	$(PY) -m pytest -q --runslow tests

# The offline demo search on the embedded digits dataset.
demo: $(STAMP)
	$(VENV)/bin/improve-nas --model_dir=runs/demo --overwrite

# The demo study: the demo search against one tower of its size and the
# paper's ablations, 3 seeds each (about an hour on 2 cores; resumable).
compare: $(STAMP)
	$(VENV)/bin/improve-nas-compare --study=demo --out=runs/compare-demo

bench: $(STAMP)
	$(PY) bench/demo_search.py
	$(PY) bench/classical_baselines.py
	$(PY) bench/memory_growth.py
	$(PY) bench/input_pipeline.py
	$(PY) bench/cluster_throughput.py
	$(PY) bench/candidate_throughput.py
	$(PY) bench/iteration_costs.py
	$(PY) bench/joint_candidates.py
	$(PY) bench/mirrored_throughput.py
	$(PY) bench/checkpoint_check.py

# The wheel and the source archive, in dist/ (built with this environment's
# setuptools: nothing is fetched).
wheel: $(STAMP)
	$(PY) -m build --no-isolation --outdir dist .

# The unit tests under Bazel (Debian's bazel-bootstrap 4.2, installed
# through apt when missing), with .venv as the interpreter.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
bazel-test: $(STAMP)
	command -v bazel >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq bazel-bootstrap; }
	bazel test //tests/...

clean:
	rm -rf $(VENV) runs .pytest_cache dist build
	command -v bazel >/dev/null && bazel clean --expunge || true
