# The README's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: setup test lint clean tasks-emulator demo stack ops

# Progress notes go to stderr, so stdout stays the commands' own output.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "setting up $(VENV) (first time or requirements changed, about 30 s)..." >&2
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "installing requirements-dev.txt into $(VENV) (quiet; most of the wait)..." >&2
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

# The Cloud Tasks emulator pins protobuf<5, so it gets its own virtualenv (.venv-tasks).
tasks-emulator: setup
	@test -f .venv-tasks/.installed || echo "setting up .venv-tasks for the Cloud Tasks emulator (first time only)..." >&2
	$(PY) -c "from local.tasks_emulator import ensure_venv; ensure_venv()"

# Everything on this machine: `make demo ARGS="--jobs 3 --fault-rate 0.2"`, `make stack`,
# `make ops ARGS="jobs --status completed"` (against the running `make stack`). make ends any
# failing recipe with exit 2, so scripts run `.venv/bin/python -m ops` for the CLI's exit codes.
demo: tasks-emulator
	$(PY) -m local.demo $(ARGS)

stack: tasks-emulator
	$(PY) -m local.stack $(ARGS)

ops: setup
	@$(PY) -m ops $(ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache

# Benchmarks against in-run baselines, written to docs/PERFORMANCE.md (about 10 minutes);
# `make bench ARGS=--quick` runs them in tiny sizes (build/PERFORMANCE-quick.md).
.PHONY: bench
bench: tasks-emulator
	$(PY) -m benchmarks $(ARGS)

# The figures of docs/RELIABILITY.md (about 6 minutes): a 300-job chaos run over the local stack
# (build/reliability/chaos.json) and the fuzzer at 300 requests per function (fuzz.json beside it).
# Another run: `make chaos ARGS="--jobs 50 --seed 3 --kills 1"`.
.PHONY: chaos
chaos: tasks-emulator
	$(PY) -m local.chaos --json build/reliability/chaos.json $(ARGS)
	FUZZ_EXAMPLES=300 $(PY) -m pytest tests/test_fuzz.py -q
