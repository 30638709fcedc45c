# The two commands of the README. Each creates the virtual environment on first use.
#   make quickstart   install, then run every stage end to end on the Python standard library
#   make test         install, then run the whole test suite
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: quickstart test install browser bench clean

install: $(INSTALLED)

# torch is pinned in pyproject.toml (2.13.0 = the local CPU wheel on these machines)
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

quickstart: $(INSTALLED)
	$(VENV)/bin/lightcoder quickstart $(ARGS)

test: $(INSTALLED) browser
	$(VENV)/bin/python -m pytest $(ARGS)

# The playground test drives Debian's headless Chromium. Installed when missing and we are root;
# otherwise that one test skips and says why.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian chromium for the playground test"; \
	    (apt-get install -y -q chromium >/tmp/lightcoder-apt.log 2>&1 || \
	     (apt-get update -q >>/tmp/lightcoder-apt.log 2>&1 && apt-get install -y -q chromium >>/tmp/lightcoder-apt.log 2>&1)) || \
	    echo "chromium install failed (see /tmp/lightcoder-apt.log); the playground test will skip"; \
	  else echo "no /usr/bin/chromium and not root: the playground test will skip"; fi; \
	fi

bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/bench_train.py
	$(VENV)/bin/python benchmarks/bench_complete.py

clean:
	rm -rf $(VENV) run .pytest_cache
