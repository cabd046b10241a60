# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-cache-off venv chromium cjk-fonts axe worker api bench bench-scale clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP) chromium cjk-fonts axe

## Debian's Chromium, for the browser test of the docs pages (tests/test_docs_browser.py); installed
## as root with apt-get when missing. `make run` does not need it. Without it that test skips, or
## fails under CI=true.
CHROMIUM := /usr/bin/chromium
CHROMIUM_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium (for tests/test_docs_browser.py)..."; \
	    $(CHROMIUM_INSTALL) 2>/dev/null || { apt-get update -qq && $(CHROMIUM_INSTALL); } \
	      || echo "warning: could not install chromium: the docs browser test will skip (fail under CI=true)" >&2; \
	  else \
	    echo "note: $(CHROMIUM) is missing and cannot be installed here (needs root and apt-get):" \
	      "the docs browser test will skip (fail under CI=true)" >&2; \
	  fi; \
	fi

## Chinese fonts, so that the console's screenshots (test-artifacts/console/) show Chinese rather
## than empty boxes; the tests pass without them.
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
cjk-fonts:
	@if [ ! -e $(CJK_FONT) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-noto-cjk >/dev/null 2>&1 \
	    || echo "note: fonts-noto-cjk not installed: the console's screenshots will show boxes for Chinese" >&2; \
	fi

## axe-core (from npm, at install time; never a CDN) for the console's accessibility checks in
## tests/test_console_browser.py. Without npm that check skips (fails under CI=true).
AXE := $(VENV)/axe-core/axe.min.js
axe: $(AXE)
$(AXE):
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(VENV)/axe-core && cd $(VENV)/axe-core && rm -f axe-core-*.tgz && \
	  npm pack --silent axe-core@4 >/dev/null && tar -xzf axe-core-*.tgz --strip-components=1 package/axe.min.js package/LICENSE && \
	  rm -f axe-core-*.tgz; \
	else \
	  echo "note: npm is missing: the console's accessibility checks will skip (fail under CI=true)" >&2; \
	fi

## Run the whole stack: Temporal dev server (SQLite under var/), worker, API on 127.0.0.1:8000.
run: $(STAMP)
	$(BIN)/python -m disputeflow.stack

## Create the environment and run the test suite, then the workflow tests again with the
## worker's workflow cache off (`make test-cache-off`).
test: $(STAMP) chromium cjk-fonts axe
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-cache-off

## The workflow tests with no workflow cache in the worker: every workflow task replays the case
## from its history, so a step that does not replay the same way fails here. The fault suite passes
## so too (`make test-cache-off CACHE_OFF_TESTS="tests/workflows tests/faults"`), but doubles the time.
CACHE_OFF_TESTS ?= tests/workflows
test-cache-off: $(STAMP)
	DISPUTEFLOW_WORKER_MAX_CACHED_WORKFLOWS=0 $(BIN)/python -m pytest -q $(CACHE_OFF_TESTS)

worker: $(STAMP)
	$(BIN)/python worker.py

api: $(STAMP)
	$(BIN)/python -m uvicorn api.app:app --host 127.0.0.1 --port 8000

## Every benchmark, one table of figures, goals and ratios to baselines of the same run (10-20 min);
## e.g. BENCH_ARGS='--open 10000 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/scale'.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# Read-model routes at 100,000 cases: SQLite in a temporary folder; add e.g.
# SCALE_ARGS='--postgres postgresql+psycopg://postgres@127.0.0.1:5432/scale' for PostgreSQL too.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/read_model_scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
