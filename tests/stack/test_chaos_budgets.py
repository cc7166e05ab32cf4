"""The budgets the answer-time invariant holds calls to (``stack.chaos.budgets``): computed
by the bundle's own code with the params the stack's functions server runs with; and the
probes ``pack391 chaos`` makes while a fault is on (``stack.chaos.probe``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import chaos_check as cc
from stack.chaos import budgets, probe
from stack.platform.handle import ChildInfo
from tests.stack.test_fault_table import handle_at


def test_budgets_are_the_edges_with_the_params_given() -> None:
    before = {name: os.environ.get(name) for name in budgets.BUDGET_PARAMS}
    table = budgets.function_budgets(
        {"PACK391_BUDGET_USER_MS": "2000", "PACK391_BUDGET_OPS_MS": "7000"}
    )
    assert table["pack391_checkRateLimit"] == 2.0  # a user callable
    assert table["pack391_checkMarketAccess"] == 2.0
    assert table["pack391_getMarketControls"] == 7.0  # an ops one
    assert table["pack391_manualScale"] == 115.0  # its own timeout (120 s) less 5 s
    assert table["pack391_scaleGuard"] == 205.0  # a scheduled one with its own timeout
    assert table["pack391_updateLiveMetrics"] == 45.0  # the scheduled default
    assert "pack391JudgeDeployment" not in table  # a task queue's: nobody waits for it
    # the defaults when the stack sets none; this process's environment is left as it was
    defaults = budgets.function_budgets({})
    assert (defaults["pack391_checkRateLimit"], defaults["pack391_getOpsDashboard"]) == (3, 10)
    assert {name: os.environ.get(name) for name in budgets.BUDGET_PARAMS} == before


@pytest.fixture
def functions_child() -> Iterator[int]:
    """A process started with a budget param of its own, standing for the functions server."""
    env = {**os.environ, "PACK391_BUDGET_USER_MS": "1500"}
    env.pop("PACK391_BUDGET_OPS_MS", None)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env
    )  # fmt: skip
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_the_params_are_read_from_the_functions_servers_environment(
    tmp_path: Path, functions_child: int
) -> None:
    handle = handle_at(tmp_path, children={"functions": ChildInfo(functions_child, 5001)})
    params = budgets.stack_params(handle)
    assert params["PACK391_BUDGET_USER_MS"] == "1500"
    assert "PACK391_BUDGET_OPS_MS" not in params  # unset there: its default
    assert budgets.stack_budgets(handle)["pack391_checkRateLimit"] == 1.5


def test_probes_read_and_scale_only_during_the_cloud_run_faults() -> None:
    reads = [p.function for p in probe.probes_for("firestore-pause")]
    assert reads == [
        "pack391_checkRateLimit",
        "pack391_checkMarketAccess",
        "pack391_getMarketControls",
        "pack391_getOpsDashboard",
    ]
    assert [p.function for p in probe.probes_for("cloudrun-slow")] == [
        *reads,
        "pack391_manualScale",
    ]


def test_the_probe_summary_holds_each_call_to_its_budget() -> None:
    window = cc.Window("firestore-pause", 100.0, 110.0)
    limits = {"pack391_getMarketControls": 10.0, "pack391_checkRateLimit": 3.0}
    calls = [
        cc.Call("probe", "pack391_checkRateLimit", 100.0, 100.1, 200, result={"allowed": True},
                function="pack391_checkRateLimit"),
        cc.Call("probe", "pack391_getMarketControls", 100.0, 111.5, 503, "UNAVAILABLE",
                function="pack391_getMarketControls"),
        cc.Call("probe", "pack391_getMarketControls", 101.0, 101.2, 200,
                function="pack391_getMarketControls"),
    ]  # fmt: skip
    verdict, lines = probe.summary(calls, window, limits)
    assert not verdict.held
    assert lines[1].split() == ["pack391_checkRateLimit", "1", "0.10s", "3s", "ok=1"]
    assert lines[2].split() == [
        "pack391_getMarketControls", "2", "11.50s", "10s", "UNAVAILABLE=1", "ok=1",
    ]  # fmt: skip
    assert lines[-1].startswith("  BROKEN every call answered within its function's budget")
    held, _ = probe.summary(calls[:1], window, limits)
    assert held.held
