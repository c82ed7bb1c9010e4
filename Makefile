# One command per job. Everything lands in .venv (created when missing).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install install-keras test test-all demo demo-keras compare bench \
	wheel bazel-test clean

# The Keras engine's environment: Python 3.12 (3.13 works too:
# make KERAS_PYTHON=python3.13), the first interpreter found that runs.
KERAS_PYTHON ?= $(firstword $(foreach p,python3.12 \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.13 \
	$(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13),\
	$(shell $(p) -c "" >/dev/null 2>&1 && echo $(p))))
KVENV  ?= .venv-keras
KPY    := $(KVENV)/bin/python
KSTAMP := $(KVENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python requirements.txt requirements-nodeps.txt constraints.txt setup.py
	$(PIP) install --quiet -c constraints.txt -r requirements.txt
	$(PIP) install --quiet --no-deps -c constraints.txt -r requirements-nodeps.txt
	$(PIP) install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

$(KVENV)/bin/python:
	@test -n "$(KERAS_PYTHON)" || { echo "no Python 3.12 or 3.13 found; set KERAS_PYTHON=" >&2; exit 2; }
	$(KERAS_PYTHON) -m venv $(KVENV)

$(KSTAMP): $(KVENV)/bin/python requirements-keras.txt constraints-keras.txt setup.py
	$(KPY) -m pip install --quiet -c constraints-keras.txt -r requirements-keras.txt
	$(KPY) -m pip install --quiet --no-deps -e .
	touch $(KSTAMP)

install-keras: $(KSTAMP)

# The test suites, fast tests only, side by side: the adanet engine's in
# .venv and the Keras engine's in its own environment, whose output follows
# once both have ended. Either failing fails the target. The two
# environments install side by side too (on a fresh clone). Each suite runs
# on TEST_WORKERS pytest-xdist workers, a whole module at a time, the
# longest modules first (tests/conftest.py).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(KSTAMP)
	@log=$$(mktemp); \
	$(KPY) -m pytest -q $(XDIST) tests_keras >$$log 2>&1 & keras=$$!; \
	$(PY) -m pytest -q $(XDIST) tests; adanet=$$?; \
	wait $$keras; kstatus=$$?; \
	echo "--- Keras engine: $(KPY) -m pytest -q tests_keras ---"; \
	cat $$log; rm -f $$log; \
	test $$adanet -eq 0 -a $$kstatus -eq 0

# Also the slow tests.
test-all: $(STAMP) $(KSTAMP)
	$(PY) -m pytest -q --runslow tests
	$(KPY) -m pytest -q --runslow tests_keras

# The offline demo search on the embedded digits dataset.
demo: $(STAMP)
	$(VENV)/bin/improve-nas --model_dir=runs/demo --overwrite

# The same demo search on the Keras 3 engine (Python 3.12).
demo-keras: $(KSTAMP)
	$(KVENV)/bin/improve-nas --engine=keras --model_dir=runs/demo-keras --overwrite

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
	rm -rf $(VENV) $(KVENV) runs .pytest_cache dist build
	command -v bazel >/dev/null && bazel clean --expunge || true
