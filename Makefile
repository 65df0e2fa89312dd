# The README's two commands are the contract: `make test` and `make reproduce` each set up
# everything they need (a virtual environment in .venv, packages from PyPI) on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Hypothesis profile: `ci` (default, minutes on two cores) or `thorough` (many more examples).
HYPOTHESIS_PROFILE ?= ci
export HYPOTHESIS_PROFILE

.PHONY: install test test-thorough reproduce bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q

# `make reproduce FULL=1`: SD 1.4's shapes on whatever device is present (default: reduced, a CPU).
FULL ?=
reproduce: $(STAMP)
	$(PY) -m paper_figures $(if $(FULL),--full)

# Kernel benchmark: every idea, variant, backend and dtype, checked then timed (experiments/kernels.py).
# e.g. make bench BENCH_ARGS="--ops winograd --dtypes float16"
bench: $(STAMP)
	$(PY) -m experiments.kernels $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m compileall -q reference backends experiments paper_figures tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
