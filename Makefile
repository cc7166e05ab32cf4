# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint format bench-ratelimit bench-scaling bench-backup bench-load-capacity bench-load-honesty clean

# ./venv is where the Firebase CLI looks for the functions' virtualenv.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(STAMP)
	@# load benchmarks (issue 5): wrk is the Debian package; installed only when root
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || apt-get install -y -qq wrk >/dev/null 2>&1 || true

run: setup
	$(BIN)/pack391 serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# Benchmarks: each prints its figures and the ratios against its peer (docs/benchmarks.md).
bench-ratelimit: setup
	$(BIN)/python -m bench.ratelimit

# Disaster recovery (issue 8): figures go to docs/benchmarks.md
bench-backup: setup
	$(BIN)/python -m bench.backup_throughput

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local *.egg-info

# Scaling simulation (issue 4): figures in docs/benchmarks.md
bench-scaling: setup
	$(BIN)/python -m bench.scaling_sim

# Load testing (issue 5): figures in docs/benchmarks.md (wrk: apt-get install -y wrk)
bench-load-capacity: setup
	$(BIN)/python -m bench.load_capacity

bench-load-honesty: setup
	$(BIN)/python -m bench.load_honesty
