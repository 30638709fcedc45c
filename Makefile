# The two commands of the README. Each creates the virtual environment on first use.
#   make quickstart   install, then run every stage end to end on the Python standard library
#   make test         install, then run the whole test suite
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: quickstart test install bench clean

install: $(INSTALLED)

# torch is pinned in pyproject.toml (2.13.0 = the local CPU wheel on these machines)
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

quickstart: $(INSTALLED)
	$(VENV)/bin/lightcoder quickstart $(ARGS)

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest $(ARGS)

bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/bench_train.py
	$(VENV)/bin/python benchmarks/bench_complete.py

clean:
	rm -rf $(VENV) run .pytest_cache
