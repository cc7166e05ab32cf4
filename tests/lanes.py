"""How ``make test`` schedules the suite: one pytest-xdist session, a parallel phase, then
a serial lane.

- **Parallel phase**: every test file not in the lane, one file per worker at a time (a
  module's own stack stays on one worker), the longest files first
  (:data:`LONGEST_FIRST`). The short rehearsal is the first of them: its claim is about
  real minutes (the scaling guard runs at the end of a minute), and it runs on the loaded
  box from the session's start (its push begins in seconds 16-22 of a minute, so the
  guard's run at that minute's end leaves 38 s and more of the 60 s claim; its service
  holds each request 400 ms at half the rates, so a loaded box's delays take little of a
  slot). It once waited for the parallel phase to end, and its minute-aligned push then
  made the session 55-120 s longer.
- **Serial lane** ``quiet``: after the parallel phase's last test (the gate,
  :data:`GATE_ENV`), the tests that need a quiet core (real-time load, latency bounds),
  one after another, on one worker.

The lane is a set of whole files (the scheduler sees only node ids): :data:`QUIET_FILES`.
Their tests are marked ``serial``, so ``-m serial`` selects them; collection checks the
two agree.

xdist's ``loadgroup`` cannot do this (with pytest 9 it no longer groups: it renames
``item._nodeid``, which ``nodeid`` no longer reads), so ``--serial-lanes`` brings this
scheduler: xdist's scope scheduling with a scope per file and one for the lane.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

QUIET_FILES = (
    "tests/load/test_engine.py",
    "tests/load/test_cli.py",
    "tests/load/test_load_timed.py",
    "tests/stack/test_sandbox_load.py",
    "tests/stack/test_bench_stack_step.py",
)
LANES = {"quiet": QUIET_FILES}

TOGETHER = {
    "auth-emulator": (
        "tests/ops/test_dashboard_browser.py",
        "tests/ops/test_console_actions.py",
        "tests/stack/test_auth_emulator.py",
    ),
}
"""Parallel files that run on one worker, one after the other, because they share what a
test process starts once and is costly: the Firebase Auth emulator (10 CPU-seconds to
start; the session fixture ``auth_emulator``, tests/conftest.py)."""

GATE_ENV = "PACK391_SERIAL_GATE"
"""A file the scheduler creates when the parallel phase's last test is done; the serial
lane waits for it (unset: no parallel phase runs beside it, the gate is open)."""
GATE_TIMEOUT_SEC = 1800.0


LONGEST_FIRST = (
    "tests/stack/test_rehearse_run.py",  # 95 s: real minutes (its push waits for one)
    "tests/ddos/test_ddos_functions.py",  # 93-122 s: on one Redis and on a cluster
    "tests/test_deploy_pipeline.py",  # 71-111 s
    "tests/test_firebase_cli.py",  # 70-96 s
    # one scope (TOGETHER): 46 + 40 + 18 s alone, one Auth emulator
    "tests/ops/test_dashboard_browser.py",
    "tests/ops/test_console_actions.py",
    "tests/stack/test_auth_emulator.py",
    "tests/stack/test_population_http.py",  # 65-69 s of real time
    "tests/ddos/test_abuse.py",  # 60-74 s: on one Redis and on a cluster
    "tests/stack/test_population.py",  # 54-63 s
    "tests/ddos/test_launch_traffic.py",  # 48-58 s: on one Redis and on a cluster
    "tests/stack/test_faults.py",  # 42-45 s
    "tests/stack/test_chaos_run.py",  # 32-38 s
    "tests/stack/test_world.py",  # 27-32 s
    "tests/backup/test_managed.py",  # 29-33 s
    "tests/load/test_load_functions.py",  # 20-29 s
    "tests/stack/test_local_stack.py",  # 20-23 s
    "tests/test_rules.py",  # 15-20 s
    "tests/stack/test_cluster_stack.py",  # 18-19 s: a Redis Cluster stack, a primary held down
    "tests/market/test_market_slots.py",  # 11-17 s
    "tests/deploy_guard/test_fast_judge.py",  # 12-25 s of real 10 s ticks
    "tests/shared/alerts/test_store.py",  # 6-14 s
    "tests/shared/ratelimit/test_limiter.py",  # 12-15 s
    "tests/market/test_stale_reads.py",  # 11 s of paused Firestore
    "tests/test_budgets_under_stall.py",  # 10-11 s: every callable through two pauses
    "tests/shared/test_bill_ceiling.py",  # 6-10 s: gunicorn and real HTTP
    "tests/stack/test_supervisor.py",  # 9-11 s
)
"""The parallel phase's longest files, measured (make test, five parallel workers): they
are handed out first, so no worker starts a 60 s file when the others are nearly done
(the longest-processing-time rule); every other file follows in collection order. Only
the order changes, never what runs: a file missing here just starts later."""


def path_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def lane_of_file(nodeid: str) -> str | None:
    path = path_of(nodeid)
    return next((lane for lane, files in LANES.items() if path in files), None)


def lane_of_item(item: pytest.Item) -> str | None:
    """The item's lane (None: the parallel phase); a ``serial`` mark and the lane files
    must agree."""
    serial = item.get_closest_marker("serial")
    marked = None if serial is None else str(serial.kwargs.get("lane", "quiet"))
    if marked != lane_of_file(item.nodeid):
        raise pytest.UsageError(
            f"{item.nodeid}: marked serial(lane={marked!r}) but its file is in lane "
            f"{lane_of_file(item.nodeid)!r}: a lane is whole files (tests/lanes.py "
            "QUIET_FILES), each of whose tests is marked serial with it"
        )
    return marked


def order_key(item: pytest.Item, lane: str | None) -> tuple[int, int]:
    """Collection order, which the scheduler follows: the longest parallel files, the
    other parallel files, the ``quiet`` lane (last: it waits for the gate)."""
    rank = {None: 1, "quiet": 2}[lane]
    path = path_of(item.nodeid)
    longest = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    return rank, longest


def wait_for_gate() -> float:
    """Block until the parallel phase is over (the gate exists); seconds waited (0 when
    no parallel phase runs beside)."""
    gate = os.environ.get(GATE_ENV)
    path = None if not gate else Path(gate)
    began = time.monotonic()
    while path is not None and not path.exists():
        if time.monotonic() - began > GATE_TIMEOUT_SEC:
            pytest.fail(f"the parallel phase did not end within {GATE_TIMEOUT_SEC:.0f}s")
        time.sleep(0.2)
    return time.monotonic() - began


class SerialLanes(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's scope scheduling: a scope per parallel file, one per lane, in collection
    order; it opens the gate when the last parallel test is done (xdist is untyped:
    hence the ignore)."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # the collection's order (order_key)
        gate = os.environ.get(GATE_ENV)
        self.gate = Path(gate) if gate else None
        self._open = False

    def _split_scope(self, nodeid: str) -> str:
        lane = lane_of_file(nodeid)
        if lane:
            return f"lane:{lane}"
        path = path_of(nodeid)
        group = next((name for name, files in TOGETHER.items() if path in files), None)
        return f"together:{group}" if group else path

    def schedule(self) -> None:
        super().schedule()
        self._maybe_open()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        super().mark_test_complete(node, item_index, duration)
        self._maybe_open()

    def _maybe_open(self) -> None:
        """Open the gate once every parallel test is done (queued, or assigned and not yet
        complete, is not done)."""
        if self._open or self.gate is None or self.collection is None:
            return
        for scope in self.workqueue:
            if not scope.startswith("lane:"):
                return
        for workload in self.assigned_work.values():
            for scope, tests in workload.items():
                if not scope.startswith("lane:") and not all(tests.values()):
                    return
        self.gate.parent.mkdir(parents=True, exist_ok=True)
        self.gate.write_text(f"{time.time()}\n")
        self._open = True
