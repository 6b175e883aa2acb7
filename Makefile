# The two commands of the README: `make run` and `make test`. Both set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast bench bench-quick browser test-sdks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: setup
	$(BIN)/touchpoints up

# Debian's chromium drives the dashboard tests (the machine's own browser: no download).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The tracking SDKs the tests drive (npm), into tests/.sdk/ (git-ignored; the fixtures also install on demand).
test-sdks:
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@test -d tests/.sdk/node/node_modules/@segment/analytics-node || npm install -s --prefix tests/.sdk/node --no-audit --no-fund @segment/analytics-node@2
	@test -d tests/.sdk/browser/node_modules/@segment/analytics-next || npm install -s --prefix tests/.sdk/browser --no-audit --no-fund @segment/analytics-next@1

test: setup browser test-sdks
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python -m bench

bench-quick: setup
	$(BIN)/python -m bench --scale 0.1

clean:
	rm -rf $(VENV) data .pytest_cache
