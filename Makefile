# The two commands of the README. Each creates the virtual environment on first use.
#   make quickstart   install, then run every stage end to end on the Python standard library
#   make test         install, then run the whole test suite
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: quickstart test install browser test-corpora bench clean

install: $(INSTALLED)

# torch is pinned in pyproject.toml (2.13.0 = the local CPU wheel on these machines)
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --no-cache-dir -e '.[dev]'
	touch $(INSTALLED)

quickstart: $(INSTALLED)
	$(VENV)/bin/lightcoder quickstart $(ARGS)

test: $(INSTALLED) browser test-corpora
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

# Real Go, Rust and TypeScript code for the per-language SFIM / ordering property tests (Python, Java,
# C, C++ and JavaScript are already on the machine), and the optional external analysers of the data
# pipeline (cppcheck, eslint). Best effort: a test whose corpus or tool is missing skips and names it.
CORPORA := $(HOME)/.cache/lightcoder/test-corpora
test-corpora:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { ! ls -d /usr/share/go-*/src >/dev/null 2>&1 || ! command -v cppcheck >/dev/null; }; then \
	  echo "installing Debian golang-src, librust-regex-dev, cppcheck (test corpora and tools)"; \
	  (apt-get install -y -q golang-src librust-regex-dev cppcheck >/tmp/lightcoder-apt-corpora.log 2>&1 || \
	   (apt-get update -q >>/tmp/lightcoder-apt-corpora.log 2>&1 && \
	    apt-get install -y -q golang-src librust-regex-dev cppcheck >>/tmp/lightcoder-apt-corpora.log 2>&1)) || \
	    echo "install failed (see /tmp/lightcoder-apt-corpora.log); Go/Rust/cppcheck tests will skip"; \
	fi
	@if [ ! -d $(CORPORA)/rxjs-7/src ] && command -v npm >/dev/null; then \
	  echo "fetching rxjs@7 from the npm registry (TypeScript test corpus)"; \
	  mkdir -p $(CORPORA)/rxjs-7 && cd $(CORPORA) && npm pack --silent rxjs@7 >/dev/null 2>&1 && \
	    tar -xzf rxjs-7*.tgz -C rxjs-7 --strip-components=1 && rm -f rxjs-7*.tgz || \
	    echo "npm pack rxjs failed; TypeScript corpus tests will skip"; \
	fi
	@if ! command -v eslint >/dev/null && command -v npm >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing eslint@9 from the npm registry (optional JS analyser)"; \
	  npm install -g --silent eslint@9 >/dev/null 2>&1 || echo "eslint install failed; its test will skip"; \
	fi

# Speed against the peer a user would pick, ratios from one run each. bench_serve needs a trained run
# (RUN=run/quickstart by default, from `make quickstart`) and compares llama.cpp when the llamacpp
# extra is installed (`.venv/bin/pip install -e '.[llamacpp]'`).
RUN ?= run/quickstart
bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/bench_dedup.py
	$(VENV)/bin/python benchmarks/bench_data.py
	$(VENV)/bin/python benchmarks/bench_sfim.py
	$(VENV)/bin/python benchmarks/bench_train.py --sdpa-row
	$(VENV)/bin/python benchmarks/bench_finetune.py
	$(VENV)/bin/python benchmarks/bench_attention.py
	$(VENV)/bin/python benchmarks/bench_complete.py
	$(VENV)/bin/python benchmarks/bench_serving_dtype.py
	$(VENV)/bin/python benchmarks/bench_exec.py
	@if [ -d $(RUN)/ckpt ]; then $(VENV)/bin/python benchmarks/bench_serve.py --ckpt $(RUN); \
	else echo "bench_serve skipped: no trained run at $(RUN) (make quickstart first)"; fi

clean:
	rm -rf $(VENV) run .pytest_cache
