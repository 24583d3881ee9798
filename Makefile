# personalize: `make demo` runs the offline demo, `make test` runs the test suite.
# Every target creates .venv and installs what it needs; nothing else is required.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

# Installs use the exact versions in $(LOCK) (what CI tested), as pip constraints:
# each target installs only its extras, at the locked versions. The lock was made
# with `make lock` for CPython 3.11 on Linux x86_64 (the machines of this project),
# for every extra but gpu, with torch pinned to the 2.13.0 CPU build ($(TORCH_PIN)).
LOCK        := requirements/lock-cpu.txt
TORCH_PIN   := requirements/torch-cpu.txt
LOCK_PYTHON := 3.11
# Where pip and uv find the torch CPU wheel (a folder of wheels or a URL); uv does not
# read pip's configuration. Elsewhere: a folder or page holding the torch 2.13.0 CPU wheel.
TORCH_FIND_LINKS ?= /opt/wheels
UV_VERSION  := 0.13.9
UV          := $(VENV)/bin/uv
LOCK_ARGS   ?=
# Every extra but gpu (faiss-gpu and faiss-cpu install the same files).
LOCK_EXTRAS = $(shell $(PYTHON) -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print(" ".join("--extra " + e for e in d["project"]["optional-dependencies"] if e != "gpu"))')
LOCK_COMPILE = $(UV) pip compile -q pyproject.toml $(LOCK_EXTRAS) -c $(TORCH_PIN) \
	  $(if $(TORCH_FIND_LINKS),--find-links $(TORCH_FIND_LINKS)) --python-version $(LOCK_PYTHON) \
	  --custom-compile-command "make lock" $(LOCK_ARGS)

# `make test-latest`: the newest versions pyproject.toml's ranges allow, no lock.
LATEST := .venv-latest

.PHONY: install demo test test-latest lock lock-check e2e bench soak ui screenshots clean help

help:
	@echo "make demo        - run the offline demo on the bundled sample users (demos/data)"
	@echo "make test        - install the locked versions and run the test suite"
	@echo "make test-latest - the suite on the newest versions pyproject.toml allows (in $(LATEST))"
	@echo "make lock        - regenerate $(LOCK) (LOCK_ARGS=--upgrade: move every pin to the newest)"
	@echo "make lock-check  - fail when $(LOCK) is out of date with pyproject.toml"
	@echo "make e2e         - browser and real-model end-to-end tests"
	@echo "make bench       - benchmarks (results in bench-results/, see docs/benchmarks.md)"
	@echo "make soak        - the long load test (>= 1,000 users, >= 1M chunks)"
	@echo "make ui          - the Streamlit demo UI on http://127.0.0.1:8501"

# torch goes first, at the locked CPU build: an unpinned torch (pulled in by
# sentence-transformers) would be a multi-GB CUDA build. A changed lock reinstalls.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(LOCK) torch
	$(PIP) install -q -c $(LOCK) -e ".[cpu,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf .demo-data
	HF_HUB_OFFLINE=1 $(VENV)/bin/personalize --data-dir .demo-data demo

# pytest exits 5 when it collected no test; that is not a failure of the code.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# A scheduled-style check: what a library user gets from the ranges today. torch
# stays the 2.13.0 CPU build; everything else is upgraded to the newest allowed.
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q -r $(TORCH_PIN)
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -c $(TORCH_PIN) -e ".[cpu,dev]"
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/tested-versions.txt
	@echo "versions under test: $(LATEST)/tested-versions.txt"
	HF_HUB_OFFLINE=1 $(LATEST)/bin/python -m pytest -q -m "not e2e" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Regenerate the lock after changing pyproject.toml's dependencies. Pins already in
# the lock are kept where they still fit; LOCK_ARGS=--upgrade moves all of them to
# the newest allowed (LOCK_ARGS="--upgrade-package NAME" moves one).
$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q uv==$(UV_VERSION)

lock: $(UV)
	$(LOCK_COMPILE) -o $(LOCK)
	@! grep -qiE '^(nvidia-|triton==)' $(LOCK) || { echo "$(LOCK) pulls CUDA packages: is the torch CPU wheel in TORCH_FIND_LINKS?"; exit 1; }
	@grep -q '^torch==2.13.0' $(LOCK) || { echo "$(LOCK) does not pin torch 2.13.0"; exit 1; }

# The lock is current when compiling it again, keeping its pins, changes nothing.
lock-check: $(UV)
	@tmp=$$(mktemp -d) && cp $(LOCK) $$tmp/lock.txt && \
	  $(LOCK_COMPILE) -o $$tmp/lock.txt && \
	  if diff -u $(LOCK) $$tmp/lock.txt; then echo "$(LOCK) is up to date"; rm -rf $$tmp; \
	  else echo "$(LOCK) is out of date with pyproject.toml: run make lock"; rm -rf $$tmp; exit 1; fi

e2e: $(STAMP)
	@test -x /usr/bin/chromium || echo "browser tests will skip: apt-get install chromium"
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m e2e $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

bench: $(STAMP)
	$(PIP) install -q -c $(LOCK) -e ".[cpu,dev,bench]"
	mkdir -p bench-results
	HF_HUB_OFFLINE=1 $(PY) -m tests.bench.run_all --out bench-results

soak: $(STAMP)
	mkdir -p bench-results
	HF_HUB_OFFLINE=1 $(PY) -m tests.bench.bench_soak --out bench-results/soak.json

ui: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/streamlit run demos/streamlit_app.py --server.address 127.0.0.1 \
	  --browser.gatherUsageStats false --client.toolbarMode minimal

# Re-take the screenshots in docs/img (needs Debian's chromium).
screenshots: $(STAMP)
	HF_HUB_OFFLINE=1 PERSONALIZE_SCREENSHOT_DIR=docs/img $(PY) -m pytest -q -m e2e tests/e2e/test_streamlit_browser.py

clean:
	rm -rf .demo-data bench-results .pytest_cache $(LATEST)
