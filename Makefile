# personalize: `make demo` runs the offline demo, `make test` runs the test suite.
# Every target creates .venv and installs what it needs; nothing else is required.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test e2e bench soak ui screenshots clean help

help:
	@echo "make demo   - run the offline demo on the bundled sample users (demos/data)"
	@echo "make test   - install and run the test suite"
	@echo "make e2e    - browser and real-model end-to-end tests"
	@echo "make bench  - benchmarks (results in bench-results/, see docs/benchmarks.md)"
	@echo "make soak   - the long load test (>= 1,000 users, >= 1M chunks)"
	@echo "make ui     - the Streamlit demo UI on http://127.0.0.1:8501"

# torch is installed first and pinned: an unpinned torch (pulled in by
# sentence-transformers) would be a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[cpu,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf .demo-data
	HF_HUB_OFFLINE=1 $(VENV)/bin/personalize --data-dir .demo-data demo

# pytest exits 5 when it collected no test; that is not a failure of the code.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

e2e: $(STAMP)
	@test -x /usr/bin/chromium || echo "browser tests will skip: apt-get install chromium"
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m e2e $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

bench: $(STAMP)
	$(PIP) install -q -e ".[cpu,dev,bench]"
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
	rm -rf .demo-data bench-results .pytest_cache
