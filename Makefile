# Two commands do all the set-up (see README.md):
#   make render   - create .venv, install zachot-gen, render build/ from spec/
#   make test     - install the system tools the tests use, check build/, run the test suite
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

# `make test` runs every test, the server tests included (tests/server: build/ installed on a
# booted Debian 12 under systemd-nspawn, the failure drills and the fleet; root, ~38 min). The explicit
# fast mode for local iteration is `ZACHOT_SKIP_SERVER=1 make test` (they are reported skipped).
PYTEST_ARGS ?=

.PHONY: render test check validate lint server-test drill bench venv clean

$(BIN)/zachot-gen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# bytecode now, as pip does for a wheel: an editable install never gets it where
	# PYTHONDONTWRITEBYTECODE is set, and compiling generator/ costs every run ~0.1 s
	$(BIN)/python -m compileall -q generator app bench
	@touch $@

venv: $(BIN)/zachot-gen

render: venv
	$(BIN)/zachot-gen render

check: venv
	$(BIN)/zachot-gen check

validate: venv
	$(BIN)/zachot-gen validate

lint: venv
	$(BIN)/ruff check generator app tests scripts bench
	$(BIN)/mypy

test: venv
	./scripts/install-system-deps.sh
	@if [ -z "$${ZACHOT_SKIP_SERVER:-}" ] || [ "$${ZACHOT_SKIP_SERVER}" = 0 ]; then ./scripts/server/install-host-deps.sh; fi
	$(BIN)/zachot-gen check
	$(BIN)/zachot-gen validate
	$(BIN)/ruff check generator app tests scripts bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

server-test: venv
	./scripts/install-system-deps.sh
	@if [ -z "$${ZACHOT_SKIP_SERVER:-}" ] || [ "$${ZACHOT_SKIP_SERVER}" = 0 ]; then ./scripts/server/install-host-deps.sh; fi
	./scripts/server/install-host-deps.sh
	$(BIN)/pytest -m server tests/server

# Only the failure drills (and the deployment they need); prints the drill table at the end.
drill: venv
	./scripts/install-system-deps.sh
	./scripts/server/install-host-deps.sh
	$(BIN)/pytest -m server tests/server/test_drills.py tests/server/test_drills_server.py

# Speed and memory beside floors and peers, one run, one table (bench/README.md); BENCH_ARGS=--quick
# only shows that it runs.
BENCH_ARGS ?=
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
