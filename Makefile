# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lock run test test-stall lint format bench-ratelimit bench-population bench-scaling bench-backup bench-canary bench-ops bench-console bench-load-capacity bench-load-honesty bench-load-cpu bench-coldstart bench-stack bench-slo chaos rehearse chromium clean

# ./venv is where the Firebase CLI looks for the functions' virtualenv.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The locks: requirements.in and requirements-dev.in compiled with the hash of
# every file PyPI has for each pinned version (Cloud Build installs requirements.txt on Linux
# x86_64 Python 3.11: pip install -r requirements.txt, hash-checked); the dev lock is
# constrained to the runtime lock, so the venv the tests run in holds the deployed set.
# The machine's pip configuration (local wheel folders) is left out: hashes are PyPI's.
PIP_COMPILE := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" \
  $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple
lock: $(STAMP)
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in

# Node tools: the Firebase CLI and the Firebase JS SDKs, exactly as
# tools/package-lock.json pins them; reinstalled when either file is newer. They live in
# tools/, not the source root: firebase-tools takes a functions source holding a
# package.json for Node code ("Unexpected runtime python311").
NODE_STAMP := tools/node_modules/.package-lock.json
$(NODE_STAMP): tools/package.json tools/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make setup: npm is missing: install Node.js 20+ with npm (the Firebase CLI test and the ops page use node_modules)" >&2; exit 1; }
	cd tools && npm ci --no-audit --no-fund
	touch $@

setup: $(STAMP) $(NODE_STAMP) chromium
	@# load benchmarks: wrk is the Debian package; installed only when root
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || apt-get install -y -qq wrk >/dev/null 2>&1 || true

# Debian's chromium for the ops dashboard's browser test: installed with apt-get
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
	$(BIN)/lint-imports

# One pytest-xdist session in two phases (README, "Tests"; tests/lanes.py): the parallel
# phase, every test file not in a serial lane on five workers, one file per worker at a
# time, longest first (each worker has its own emulator, redis-server and port block;
# five, not three: a quarter of the cores' time sat idle with three, docs/testing.md);
# then the serial phase, two lanes side by side behind a gate that opens when the last
# parallel test is done: the claims about real minutes (the short rehearsal, whose stack
# and hold start early on a worker of its own and whose push waits for the gate) and the
# tests that need a quiet core. The session checks the collected count against
# tests/collected-floor.txt.
PYTEST_WORKERS ?= 6
test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --serial-lanes --durations=20

# Benchmarks: each prints its figures and the ratios against its peer (docs/benchmarks.md).
# The rate limiter on one Redis and on a three-primary Redis Cluster, against `limits`, and
# the cost per decision; then the capacity tables of docs/scaling-out.md from that run.
bench-ratelimit: setup
	$(BIN)/python -m bench.ratelimit
	$(BIN)/python -m bench.capacity

# A launch-day population under every attack, on a simulated clock; no peer, judged
# against the goals of stack/population/model.py (PASS/FAIL per goal; exit 1 on a failure).
bench-population: setup
	$(BIN)/python -m bench.population

bench-backup: setup
	$(BIN)/python -m bench.backup_throughput

bench-scaling: setup
	$(BIN)/python -m bench.scaling_sim

bench-canary: setup
	$(BIN)/python -m bench.canary_sim
	$(BIN)/python -m bench.fast_judge
	$(BIN)/python -m bench.fast_judge --error-pct 50

bench-ops: setup
	$(BIN)/python -m bench.ops_metrics

bench-console: setup   # the ops console's reads against polling the dashboard (docs/benchmarks.md)
	$(BIN)/python -m bench.ops_console

bench-load-capacity: setup   # wrk is Debian's package: apt-get install -y wrk
	$(BIN)/python -m bench.load_capacity

bench-load-honesty: setup
	$(BIN)/python -m bench.load_honesty

bench-load-cpu: setup   # the generator's CPU per request vs Locust and wrk (docs/benchmarks.md)
	$(BIN)/python -m bench.load_cpu

bench-slo: setup   # recording a call for the error budgets vs the traffic counters (docs/benchmarks.md)
	$(BIN)/python -m bench.slo_recorder

bench-coldstart: setup
	$(BIN)/python -m bench.coldstart

# The highest swipe_load rate the whole local stack holds on this machine
# (generator, sandbox, Redis and the emulator on the same cores), CPU per component;
# .local/bench-stack.json. About 5-8 minutes.
bench-stack: setup
	$(BIN)/python -m bench.stack

# Chaos: every fault of stack/chaos/faults.py during a load run against a stack of
# its own; report in .local/chaos/report.json; exit 1 when an invariant breaks (docs/chaos.md).
chaos: setup
	$(BIN)/pack391 chaos-run --serve

# Every callable during a 15 s Firestore pause, then a 15 s Redis pause, answers within its budget, and normally
# after (the suite runs the same tests with 2.5 s pauses; docs/reliability.md). About a minute.
test-stall: setup
	PACK391_STALL_TEST_PAUSE_SEC=15 $(BIN)/python -m pytest -p no:randomly tests/test_budgets_under_stall.py

# Launch rehearsal: launch day on a stack of its own, every claim of the spec
# judged; reports in .local/rehearse/rehearsal.{json,html}; exit 1 when a claim fails (~16 min).
rehearse: setup
	$(BIN)/pack391 rehearse --serve

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local *.egg-info
