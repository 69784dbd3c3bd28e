# Two commands do everything on a fresh machine with Python 3.11, Node and the package registries:
#   make run    serve the production build on $DATABRICKS_APP_PORT, else $PORT, else 3000
#   make test   the whole suite: unit, integration (real PostgreSQL) and Playwright (Chromium)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
BUN_VERSION := 1.4.4
BUN := .tools/node_modules/bun/bin/bun.exe
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

export REFLEX_TELEMETRY_ENABLED := false
export REFLEX_CHECK_LATEST_VERSION := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run dev test setup chromium bench clean

run: setup
	exec $(PY) -m stackql_inventory.serve

dev: setup
	exec $(PY) -m stackql_inventory.serve --dev

test: setup chromium
	$(PY) -m pytest --require-browser

setup: $(VENV)/.installed $(BUN)

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# bun from the npm registry (Reflex's own installer needs GitHub, which is unreachable here).
$(BUN):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)

# Playwright cannot download browsers here: use Debian's chromium unless one is already present.
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x "$${CHROMIUM_PATH:-/nonexistent}" || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf .web .states .tools $(VENV)
