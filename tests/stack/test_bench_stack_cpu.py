"""``make bench-stack``'s CPU accounting: a component is its process tree (the sandbox's
workers are its), each worker is judged on its own, and the bench names what ran out of
CPU (bench/stack_measures.py, bench/stack.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from bench.stack import SPEC_RPS, describe_limit, out_of_cpu
from bench.stack_measures import (
    Step,
    component_processes,
    cpu_limit,
    cpu_table,
    render_table,
    sample_cpu,
)


def step(
    rps: float, passed: bool, cpu_sec: dict[str, float], machine: float, shards: int = 1
) -> Step:
    before = dict.fromkeys(cpu_sec, 0.0)
    return Step(
        rps=rps,
        passed=passed,
        summary={},
        wall_sec=10.0,
        cpu=cpu_table(before, cpu_sec, 10.0),
        extra={"machineBusyPct": machine, "shards": shards},
    )


def test_a_component_counts_its_children_but_not_another_component() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            trees = component_processes({"sandbox": os.getpid(), "other": child.pid})
            assert trees["other"] == [child.pid]
            assert child.pid not in trees["sandbox"] and trees["sandbox"][0] == os.getpid()
            sample = sample_cpu({"sandbox": os.getpid()})
            assert f"sandbox/{child.pid}" in sample  # a process of its own row
            assert sample["sandbox"] == pytest.approx(
                sum(v for k, v in sample.items() if k.startswith("sandbox/")), abs=0.05
            )
        finally:
            child.kill()


def test_the_total_and_shares_leave_the_per_process_rows_out() -> None:
    s = step(1400, False, {"sandbox": 19.0, "sandbox/1": 0.2, "sandbox/2": 9.6,
                           "sandbox/3": 9.2, "redis": 1.0}, 97.0)  # fmt: skip
    assert s.cpu["sandbox"]["sharePct"] == 95.0 and s.cpu["sandbox/2"]["pctOfCore"] == 96.0
    table = render_table(s)
    assert "  sandbox pid 2" in table
    assert table.splitlines()[-2].split()[:2] == ["total", "20.00"]  # the components only
    assert list(s.cpu)[:4] == ["sandbox", "sandbox/1", "sandbox/2", "sandbox/3"]


@pytest.mark.parametrize(
    ("cpu_sec", "machine", "shards", "expected"),
    [
        # one worker at 96 % of a core: it is the limit, not the sandbox's 188 %
        ({"sandbox": 18.8, "sandbox/1": 0.0, "sandbox/2": 9.6, "sandbox/3": 9.2}, 90.0, 1,
         {"process": "sandbox/2", "pctOfCore": 96.0}),
        # a single-process component at 92 %
        ({"firestore-emulator": 9.2, "redis": 1.0}, 60.0, 1,
         {"process": "firestore-emulator", "pctOfCore": 92.0}),
        # the generator by its mean load worker: 160 % over 2 workers is 80 %, not out
        ({"generator": 16.0, "sandbox": 8.0}, 96.0, 2, {"process": "the machine (all cores)"}),
        ({"generator": 16.0, "sandbox": 8.0}, 80.0, 2, None),
    ],
)  # fmt: skip
def test_what_ran_out_of_cpu(
    cpu_sec: dict[str, float], machine: float, shards: int, expected: dict[str, Any] | None
) -> None:
    limit = cpu_limit(step(1400, False, cpu_sec, machine, shards), shards)
    if expected is None:
        assert limit is None
    else:
        assert limit is not None and expected.items() <= limit.items()


def test_the_bench_names_the_limit_at_the_first_failure_above_the_best() -> None:
    steps = [
        step(1200, True, {"sandbox/1": 7.0, "sandbox/2": 7.0, "sandbox": 14.0}, 80.0),
        step(1666, False, {"sandbox/1": 9.9, "sandbox/2": 9.4, "sandbox": 19.3}, 99.0),
        step(1430, False, {"sandbox/1": 9.5, "sandbox/2": 9.1, "sandbox": 18.6}, 97.0),
    ]
    limit = out_of_cpu(steps, 1200.0)
    assert limit is not None and limit["rps"] == 1430 and limit["process"] == "sandbox/1"
    line = describe_limit(limit, 1200.0)
    assert line.startswith(f"held 1200 RPS, under the spec's {SPEC_RPS:g}: out of CPU at 1430")
    calm = out_of_cpu(
        [step(1200, True, {"redis": 1.0}, 40.0), step(1400, False, {"redis": 2.0}, 50.0)], 1200.0
    )
    assert calm is not None and calm["process"] is None
    assert "nothing ran out of CPU at 1400 RPS" in describe_limit(calm, 1200.0)
