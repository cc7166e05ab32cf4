"""How ``make test`` schedules the suite: one pytest-xdist session, a parallel phase, then
a serial phase in two lanes.

- **Parallel phase**: every test file not in a lane, one file per worker at a time (a
  module's own stack stays on one worker), the longest files first
  (:data:`LONGEST_FIRST`).
- **Serial phase**: after the parallel phase's last test, the two lanes run side by side,
  one worker each:

  - ``minutes``: the claims about real minutes (the short rehearsal: its scaling guard
    must run on time at the end of a minute). Its own worker starts its stack when the
    last parallel file has been handed out (:func:`warm_path`: the parallel phase is in
    its last files), so the stack's start, the world and the hold overlap that tail; the
    push, the breach and the guard's minute wait for the gate (:data:`GATE_ENV`), which
    opens when the parallel phase's last test is done. (Started with the session, the
    rehearsal's stack and hold cost the parallel phase about 25 s.)
  - ``quiet``: the tests that need a quiet core (real-time load, latency bounds), one
    after another, from the gate on.

  The rehearsal's stack uses about a third of a core while it runs, so on two cores each
  lane has a core of its own.

A lane is a set of whole files (the scheduler sees only node ids): :data:`MINUTES_FILES`
and :data:`QUIET_FILES`. Their tests are marked ``serial`` (``lane="minutes"`` or the
default ``"quiet"``), so ``-m serial`` selects them; collection checks the two agree.

xdist's ``loadgroup`` cannot do this (with pytest 9 it no longer groups: it renames
``item._nodeid``, which ``nodeid`` no longer reads), so ``--serial-lanes`` brings this
scheduler: xdist's scope scheduling with a scope per file and one per lane.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

MINUTES_FILES = ("tests/stack/test_rehearse_run.py",)
QUIET_FILES = (
    "tests/load/test_engine.py",
    "tests/load/test_cli.py",
    "tests/load/test_load_timed.py",
    "tests/stack/test_sandbox_load.py",
    "tests/stack/test_bench_stack_step.py",
)
LANES = {"minutes": MINUTES_FILES, "quiet": QUIET_FILES}

GATE_ENV = "PACK391_SERIAL_GATE"
"""A file the scheduler creates when the parallel phase's last test is done; the serial
lanes wait for it (unset: no parallel phase runs beside them, the gate is open)."""
GATE_TIMEOUT_SEC = 1800.0


def warm_path(gate: str) -> Path:
    """The file the scheduler creates when the last parallel file is handed out."""
    return Path(gate + ".warm")


LONGEST_FIRST = (
    "tests/stack/test_population_http.py",  # 45-55 s of real time
    "tests/ops/test_dashboard_browser.py",  # 49 s on one of three workers
    "tests/test_firebase_cli.py",  # 47 s
    "tests/test_deploy_pipeline.py",  # 37 s
    "tests/ddos/test_ddos_functions.py",  # 33 s: on one Redis and on a cluster
    "tests/stack/test_world.py",  # 29 s
    "tests/stack/test_chaos_run.py",  # 28 s
    "tests/ddos/test_abuse.py",  # 27 s: on one Redis and on a cluster
    "tests/stack/test_faults.py",  # 27 s
    "tests/load/test_load_functions.py",  # 25 s
    "tests/ddos/test_launch_traffic.py",  # 20 s: on one Redis and on a cluster
    "tests/stack/test_population.py",  # 15-20 s
    "tests/deploy_guard/test_fast_judge.py",  # 12-25 s of real 10 s ticks
    "tests/test_budgets_under_stall.py",  # 13 s: every callable through two pauses
    "tests/market/test_stale_reads.py",  # 11 s of paused Firestore
    "tests/shared/test_bill_ceiling.py",  # gunicorn and real HTTP
    "tests/test_rules.py",  # 18 s
    "tests/stack/test_cluster_stack.py",  # 13 s: a Redis Cluster stack, a primary held down
    "tests/stack/test_local_stack.py",  # 13 s
    "tests/stack/test_supervisor.py",  # 11 s
)
"""The parallel phase's longest files, measured (make test, three parallel workers): they
are handed out first, so no worker starts a 45 s file when the others are nearly done
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
            "MINUTES_FILES, QUIET_FILES), each of whose tests is marked serial with it"
        )
    return marked


def order_key(item: pytest.Item, lane: str | None) -> tuple[int, int]:
    """Collection order, which the scheduler follows: the ``minutes`` lane (it starts at
    once, on a worker of its own), the longest parallel files, the other parallel files,
    the ``quiet`` lane (last: it waits for the gate)."""
    rank = {"minutes": 0, None: 1, "quiet": 2}[lane]
    path = path_of(item.nodeid)
    longest = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    return rank, longest


def wait_for_gate(warm: bool = False) -> float:
    """Block until the parallel phase is over (the gate exists), or with ``warm`` until it
    is in its last files; seconds waited (0 when no parallel phase runs beside)."""
    gate = os.environ.get(GATE_ENV)
    path = None if not gate else warm_path(gate) if warm else Path(gate)
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
        return f"lane:{lane}" if lane else path_of(nodeid)

    def schedule(self) -> None:
        super().schedule()
        self._maybe_open()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        super().mark_test_complete(node, item_index, duration)
        self._maybe_open()

    def _maybe_open(self) -> None:
        """Warm once no parallel file waits to be handed out; open the gate once every
        parallel test is done (queued, or assigned and not yet complete, is not done)."""
        if self._open or self.gate is None or self.collection is None:
            return
        for scope in self.workqueue:
            if not scope.startswith("lane:"):
                return
        warm = warm_path(str(self.gate))
        if not warm.exists():
            warm.parent.mkdir(parents=True, exist_ok=True)
            warm.write_text(f"{time.time()}\n")
        for workload in self.assigned_work.values():
            for scope, tests in workload.items():
                if not scope.startswith("lane:") and not all(tests.values()):
                    return
        self.gate.parent.mkdir(parents=True, exist_ok=True)
        self.gate.write_text(f"{time.time()}\n")
        self._open = True
