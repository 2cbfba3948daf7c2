# Every target sets up .venv by itself: on a fresh machine `make demo` and `make test`
# need nothing but Python 3.10+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lint bench docs gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m minattn scaling --quick

lint: $(STAMP)
	$(PY) -m ruff check minattn tests benchmarks examples docs/hooks.py

bench: $(STAMP)
	$(PY) -m minattn bench

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# For a GPU machine that reaches no package registry: uses the Python already there
# (CuPy, PyTorch, numba, pytest), the source tree on PYTHONPATH, installs nothing.
gpu-check:
	bash benchmarks/gpu_check.sh

# Removes what the build made; never results/ (saved experiment and training runs).
clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .ruff_cache .hypothesis
