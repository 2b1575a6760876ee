# Two entry points for a fresh machine with Python 3.10+: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The PyTorch build to install first; override for another platform, e.g. TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
# The optional extras that make test installs too, so that the tests of sweeps, clusters, the demo and the other
# loggers run (without them, those tests skip); the quick start needs none of them.
EXTRAS ?= sweeps,cluster,demo,loggers

.PHONY: install install-extras demo test test-fast lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.extras-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

install-extras: $(VENV)/.extras-installed

demo: install
	$(BIN)/python train.py experiment=quickstart

test: install-extras lint
	$(BIN)/python -m pytest

# The tests not marked slow (no training, evaluation or extra processes): under a minute.
test-fast: install-extras
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) outputs cache data
