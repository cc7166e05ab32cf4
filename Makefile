# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint format bench-ratelimit bench-scaling bench-backup bench-canary bench-ops bench-load-capacity bench-load-honesty chromium clean

# ./venv is where the Firebase CLI looks for the functions' virtualenv.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(STAMP) chromium
	@# load benchmarks (issue 5): wrk is the Debian package; installed only when root
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || apt-get install -y -qq wrk >/dev/null 2>&1 || true

# Debian's chromium for the ops dashboard's browser test (issue 7): installed with apt-get
# when missing and we are root; otherwise (or if apt fails) that one test skips, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "make setup: could not install chromium with apt-get; the browser test will skip"; \
	  else \
	    echo "make setup: chromium is missing (install Debian's chromium as root); the browser test will skip"; \
	  fi; }

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

bench-backup: setup
	$(BIN)/python -m bench.backup_throughput

bench-scaling: setup
	$(BIN)/python -m bench.scaling_sim

bench-canary: setup
	$(BIN)/python -m bench.canary_sim

bench-ops: setup
	$(BIN)/python -m bench.ops_metrics

bench-load-capacity: setup   # wrk is Debian's package: apt-get install -y wrk
	$(BIN)/python -m bench.load_capacity

bench-load-honesty: setup
	$(BIN)/python -m bench.load_honesty

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local *.egg-info
