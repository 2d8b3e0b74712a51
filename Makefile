# matchcast: `make run` serves on the embedded defaults, `make test` runs everything.
# Both install what they need first (a virtualenv from constraints.txt; PostgreSQL, Redis and
# Chromium from Debian when this machine lacks them).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The Node.js baseline of the benchmarks: `ws` exactly as bench/node/package-lock.json pins it.
NODE_BASELINE := bench/node/node_modules/.package-lock.json

.PHONY: install run test check bench chaos services browser lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

$(NODE_BASELINE): bench/node/package.json bench/node/package-lock.json
	@scripts/node.sh
	cd bench/node && npm ci --no-audit --no-fund --loglevel=error

run: install
	$(BIN)/matchcast serve

services:
	@scripts/services.sh

browser:
	@scripts/browser.sh

# Most tests wait on sockets, not the CPU: four workers finish in well under half the time.
# The checks run first: CI runs `make test` only, so the rules hold on every landing. The slowest
# tests are listed at the end: the suite must stay under 10 minutes, and CI's log says where it goes.
test: check services browser $(NODE_BASELINE)
	$(BIN)/pytest -n 4 --dist loadfile --durations=12

check: install
	$(BIN)/ruff format --check src tests bench chaos
	$(BIN)/ruff check src tests bench chaos
	$(BIN)/mypy src tests chaos
	$(BIN)/lint-imports

bench: install services $(NODE_BASELINE)
	$(BIN)/python -m bench.run

# Jepsen-style faults on a three-instance cluster (chaos/harness.py): CHAOS_SECONDS (300), CHAOS_SEED.
# Writes chaos/results/latest.json; the last line is the summary; fails on any violation.
chaos: install services
	$(BIN)/python -m chaos

# Refresh the constraints file after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^matchcast' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache matchcast.db* bench/node/node_modules
