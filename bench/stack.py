"""``make bench-stack``: the highest ``swipe_load`` rate the local stack holds, end to end.

The generator (``pack391 loadtest``'s worker processes), the sandbox, the functions
server, the Redis latency proxy, redis-server and the Firestore emulator all share this
machine's cores, as they do under ``make run``. The bench starts a stack of its own on
free ports (or, with ``--use-running``, uses the one ``.local/stack.json`` names), then
searches the rate: coarse steps up (:data:`COARSE_RPS`) until one fails the spec's
targets (avg < 200 ms, p95 < 400 ms, p99 < 800 ms, errors < 1%, and no more than 1% shed
or dropped: the run's own verdict), then bisects between the last pass and the first
failure (:func:`next_rate`, a pure function of the steps so far). Each step runs
``--step-sec`` seconds; between steps the sandbox must be idle again (the seconds it
took are reported: an overload leaves no backlog) and, on its own stack, the emulator is
wiped.

Per step it samples each process's CPU (:mod:`bench.stack_measures`, which holds every
measurement and the step's record) and reports CPU-seconds and % of one core per
component, the sandbox's worker processes (its children) each on a row of their own, and
the machine's busy share of all its cores; for the best rate it prints the table. When
the best rate is below the spec's 1,666 RPS it names what ran out of CPU at the first
rate that failed (``cpuLimit``: a process at 90 % of one core or more, else the machine
at 95 % of its cores or more, else none: the limit is not CPU). It also counts what ``swipe_load``
writes to Firestore per request and measures the emulator alone (single-document writes
per second from one async client) to say what limits the rate. Per step it also reads the
sandbox's group-commit counters (``GET /__group-commit``: writes, commits, writes per
commit). ``--compare-group-commit`` runs the whole search
twice, each on a stack of its own: group commit on, then off
(``PACK391_SANDBOX_GROUP_COMMIT=0``); every result records its mode (``groupCommit``)
and the machine's load average. JSON goes to ``.local/bench-stack.json``.

    ./venv/bin/python -m bench.stack [--step-sec 15] [--use-running] [--out PATH]
                                     [--compare-group-commit]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.stack_measures import (
    Step,
    busiest_process,
    commit_delta,
    commit_stats,
    count_docs,
    cpu_limit,
    cpu_table,
    emulator_writes_per_sec,
    load_average,
    machine_busy,
    machine_ticks,
    render_table,
    sample_cpu,
    wait_idle,
)
from functions.load.scenarios import build_plan, new_run_id
from shared import thresholds as t
from shared.clock import utc_now
from stack.loadtest import run_local
from stack.platform import datastores
from stack.platform.handle import StackHandle

SOURCE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_OUT = SOURCE_DIR / ".local" / "bench-stack.json"

SCENARIO = "swipe_load"
COARSE_RPS: tuple[float, ...] = (200, 400, 600, 800, 1000, 1200, 1400, 1666)
"""The coarse steps up, the last being the spec's rate."""
MIN_GAP_RPS = 50.0
"""Bisection stops when the last pass and the first failure are this close."""
MAX_STEPS = 11
"""At most this many steps (about 20 s each with the pause: the bench stays under 8 min)."""

COMPONENTS = ("generator", "sandbox", "functions", "supervisor", "redis-proxy", "redis",
              "firestore-emulator")  # fmt: skip
"""The processes whose CPU is sampled (names as in the stack's state file)."""


# ------------------------------------------------------------------ the search (pure)


def next_rate(
    history: Sequence[tuple[float, bool]],
    coarse: Sequence[float] = COARSE_RPS,
    min_gap: float = MIN_GAP_RPS,
    max_steps: int = MAX_STEPS,
) -> float | None:
    """The next rate to try after ``history`` (rate, passed) in order, or None when the
    search is over: up the coarse steps while every step passed, then bisect between
    the highest pass and the lowest failure above it (rounded to 10 RPS)."""
    if len(history) >= max_steps:
        return None
    tried = {rate for rate, _ in history}
    if all(passed for _, passed in history):
        for rate in coarse:
            if rate not in tried:
                return rate
        return None
    passes = [rate for rate, passed in history if passed]
    low = max(passes, default=0.0)
    fails = [rate for rate, passed in history if not passed and rate > low]
    if not fails:
        return None
    high = min(fails)
    if high - low <= min_gap:
        return None
    mid = round((low + high) / 2 / 10) * 10
    return mid if mid not in tried and low < mid < high else None


def best_rate(history: Sequence[tuple[float, bool]]) -> float | None:
    """The highest rate that passed below the lowest one that failed (a noisy pass above
    a failure does not count), or None when none passed."""
    lowest_fail = min((rate for rate, passed in history if not passed), default=float("inf"))
    passes = [rate for rate, passed in history if passed and rate < lowest_fail]
    return max(passes, default=None)


# ------------------------------------------------------------------ one step


def run_step(
    target: str, rps: float, duration_sec: int, pids: Mapping[str, int], shards: int | None = None
) -> Step:
    """One ``swipe_load`` run at ``rps`` with every component's CPU sampled around it."""
    plan = build_plan(SCENARIO, target, rps=rps, duration_sec=duration_sec, shards=shards)
    run_id = new_run_id(utc_now())
    before, machine_before = sample_cpu(pids), machine_ticks()
    started = time.monotonic()
    result = run_local(plan, run_id, quiet=True)
    wall = time.monotonic() - started
    after, machine_after = sample_cpu(pids), machine_ticks()
    summary = result["summary"]
    return Step(
        rps=rps,
        passed=summary["verdict"] == "pass",
        summary=summary,
        wall_sec=round(wall, 2),
        cpu=cpu_table(before, after, wall),
        run_id=run_id,
        extra={
            "machineBusyPct": machine_busy(machine_before, machine_after),
            "shards": plan.shards,
        },
    )


# ------------------------------------------------------------------ the stack


@contextlib.contextmanager
def the_stack(use_running: bool, log_dir: Path) -> Iterator[tuple[StackHandle, bool]]:
    """The stack to measure, and whether it is ours (ours: wiped between steps)."""
    if use_running:
        yield StackHandle.load(), False
        return
    from stack.platform.harness import serve_stack

    state = Path(tempfile.mkdtemp(prefix="pack391-bench-stack-")) / "stack.json"
    with serve_stack(log_dir, state) as handle:
        yield handle, True


def component_pids(handle: StackHandle) -> dict[str, int]:
    pids = {name: info.pid for name, info in handle.children.items() if name in COMPONENTS}
    pids["supervisor"] = handle.supervisor_pid
    return pids


def search(
    target: str,
    pids: Mapping[str, int],
    step_sec: int,
    between: Callable[[Step], None],
    coarse: Sequence[float] = COARSE_RPS,
) -> list[Step]:
    steps: list[Step] = []
    while (rate := next_rate([(s.rps, s.passed) for s in steps], coarse)) is not None:
        commits_before = commit_stats(target)
        step = run_step(target, rate, step_sec, pids)
        step.group_commit = commit_delta(commits_before, commit_stats(target))
        step.extra["loadAverage"] = load_average()
        between(step)
        steps.append(step)
        b = step.brief()
        lat = b["latencyMs"]
        gc = b["groupCommit"] or {}
        hot = busiest_process(step, int(step.extra.get("shards") or 1))
        print(
            f"{rate:7.0f} RPS  {'pass' if step.passed else 'FAIL'}  "
            f"achieved {b['achievedRps']:7.1f}"
            f"  avg {lat['avg']:7.1f}  p95 {lat['p95']:7.1f}  p99 {lat['p99']:7.1f} ms  errors "
            f"{b['errorRatePct']:5.2f}%  shed {b['shedRatePct']:5.2f}%  dropped {b['dropped']:5d}"
            f"  idle after {b['idleAfterSec']} s  writes/request {b['writesPerRequest']}"
            f"  writes/commit {gc.get('writesPerCommit')}  load {step.extra['loadAverage'][0]}"
            f"  busiest {hot[0] if hot else None} {hot[1] if hot else 0:.0f}% of a core"
            f"  machine {step.extra.get('machineBusyPct')}% of its cores",
            flush=True,
        )
    return steps


GROUP_COMMIT_ENV = "PACK391_SANDBOX_GROUP_COMMIT"
"""The sandbox's switch (``stack.sandbox``), inherited through ``pack391 serve``."""


@contextlib.contextmanager
def group_commit_env(on: bool | None) -> Iterator[None]:
    """``PACK391_SANDBOX_GROUP_COMMIT`` set for the stack started inside (None: as is)."""
    if on is None:
        yield
        return
    old = os.environ.get(GROUP_COMMIT_ENV)
    os.environ[GROUP_COMMIT_ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(GROUP_COMMIT_ENV, None)
        else:
            os.environ[GROUP_COMMIT_ENV] = old


DEFAULT_PRESCALE = 20
"""Instances of the scenario's service for the search (its registry maximum is 40)."""

PRESCALED_SERVICE = "matching-engine"
"""The service every ``swipe_load`` endpoint belongs to (``/swipe``, ``/discovery/feed``)."""


def prescale(handle: StackHandle, instances: int) -> dict[str, Any] | None:
    """Scale the scenario's service to ``instances`` before the search, with
    ``pack391_manualScale`` (as a team does before a launch), and wait until the sandbox
    serves with them: the search then measures what the box holds, not the admission
    queue of the spec's initial 5 instances (the scaling guard reacts on whole minutes,
    longer than a step). 0 leaves the registry's count. Returns what was applied."""
    if instances <= 0:
        return None
    from stack.cli import caller
    from stack.platform.tokens import role_token

    base = f"{handle.functions_url}/{handle.project}/{handle.region}"
    endpoint = caller.Endpoint(base, role_token(handle.project, "admin", None))
    answer = caller.call(
        endpoint,
        "pack391_manualScale",
        {
            "serviceId": PRESCALED_SERVICE,
            "action": "scale_to",
            "instanceCount": instances,
            "reason": "bench-stack: pre-scaled for the capacity search",
        },
    )
    deadline = time.monotonic() + 30.0
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{handle.sandbox_url}/__health", timeout=5) as answer_:
            health = json.loads(answer_.read())
        served = health.get(PRESCALED_SERVICE, {}).get("instances")
        if served == instances:
            return {"service": PRESCALED_SERVICE, "instances": instances, "answer": answer}
        time.sleep(0.5)
    raise SystemExit(
        f"bench-stack: the sandbox did not take {instances} instances of {PRESCALED_SERVICE} "
        f"within 30 s (its /__health: {health})"
    )


SPEC_RPS = float(t.LOAD_TEST_SCENARIOS[SCENARIO][0])
"""The spec's rate of ``swipe_load`` (1,666)."""


def out_of_cpu(steps: Sequence[Step], best: float | None) -> dict[str, Any] | None:
    """What ran out of CPU (:func:`bench.stack_measures.cpu_limit`) at the lowest rate that
    failed above ``best`` (the one where the stack stopped holding), else at the best."""
    failed = [s for s in steps if not s.passed and (best is None or s.rps > best)]
    at = min(failed, key=lambda s: s.rps, default=None)
    at = at or next((s for s in steps if s.rps == best), None)
    if at is None:
        return None
    limit = cpu_limit(at, int(at.extra.get("shards") or 1))
    return limit or {"rps": at.rps, "process": None,
                     "machineBusyPct": at.extra.get("machineBusyPct")}  # fmt: skip


def describe_limit(limit: dict[str, Any] | None, best: float | None) -> str:
    """The line naming what ran out of CPU (or that nothing did)."""
    held = f"{best:g} RPS" if best is not None else "no rate"
    head = f"held {held}, under the spec's {SPEC_RPS:g}"
    if limit is None:
        return f"{head}: no step to judge the CPU by"
    where = f"at {limit['rps']:g} RPS"
    if limit.get("process") is None:
        return (f"{head}: nothing ran out of CPU {where} (no process at 90 % of a core, the "
                f"machine at {limit.get('machineBusyPct')} % of its cores)")  # fmt: skip
    if "pctOfCore" in limit:
        return (f"{head}: out of CPU {where}: {limit['process']} at {limit['pctOfCore']} % "
                f"of one core (machine {limit.get('machineBusyPct')} % of its cores)")  # fmt: skip
    return f"{head}: out of CPU {where}: the machine at {limit['machineBusyPct']} % of its cores"


def measure(
    args: argparse.Namespace, coarse: Sequence[float], group_commit: bool | None
) -> dict[str, Any]:
    """One whole search on one stack; its report (``groupCommit``: the sandbox's mode)."""
    log_dir = SOURCE_DIR / ".local" / "bench-stack-logs"
    started = time.monotonic()
    load_before = load_average()
    with group_commit_env(group_commit), the_stack(args.use_running, log_dir) as (handle, ours):
        pids = component_pids(handle)
        prescaled = prescale(handle, args.prescale)
        whose = "its own" if ours else "the running"
        mode = (commit_stats(handle.sandbox_url) or {}).get("groupCommit")
        print(f"bench-stack: {SCENARIO} against {handle.sandbox_url} ({whose} stack, group "
              f"commit {mode}, pids {pids}); {os.cpu_count()} cores, load average "
              f"{load_before}", flush=True)  # fmt: skip

        def between(step: Step) -> None:
            step.idle_after_sec = wait_idle(handle.sandbox_url)
            step.docs_written = count_docs(handle.project, handle.firestore_host, step.run_id)
            if ours:
                datastores.wipe_firestore(handle.firestore_host, handle.project)
            time.sleep(2.0)  # let the emulator's collector settle before the next step

        steps = search(handle.sandbox_url, pids, args.step_sec, between, coarse)
        writes = emulator_writes_per_sec(handle.project, handle.firestore_host)
        if ours:
            datastores.wipe_firestore(handle.firestore_host, handle.project)
    best = best_rate([(s.rps, s.passed) for s in steps])
    at_best = next((s for s in steps if s.rps == best), None)
    shown = at_best or max(steps, key=lambda s: s.summary["achievedRps"])
    print()
    print(render_table(shown))
    limit = None
    if best is None or best < SPEC_RPS:
        limit = out_of_cpu(steps, best)
        print(f"\n{describe_limit(limit, best)}")
    writes_per_request = shown.brief()["writesPerRequest"]
    print(
        f"\nbest rate meeting the targets (group commit {mode}): "
        f"{best if best is not None else 'none'} RPS "
        f"(target {t.LOAD_TEST_SCENARIOS[SCENARIO][0]:g} spec, 600 local); swipe_load writes "
        f"{writes_per_request} Firestore documents per request; the emulator alone takes "
        f"{writes:.0f} single-document writes/s from one async client"
    )
    return {
        "scenario": SCENARIO,
        "groupCommit": mode,
        "cores": os.cpu_count(),
        "loadAverageBefore": load_before,
        "loadAverageAfter": load_average(),
        "stepSec": args.step_sec,
        "prescaled": prescaled,
        "ownStack": not args.use_running,
        "bestRps": best,
        "steps": [s.brief() for s in steps],
        "cpuAtBest": shown.cpu,
        "cpuAtRps": shown.rps,
        "machineBusyPctAtBest": shown.extra.get("machineBusyPct"),
        "specRps": SPEC_RPS,
        "heldSpecRps": best is not None and best >= SPEC_RPS,
        "cpuLimit": limit,
        "groupCommitAtBest": shown.group_commit,
        "emulatorWritesPerSec": writes,
        "writesPerRequest": writes_per_request,
        "totalSec": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-sec", type=int, default=15, help="seconds per step (15)")
    parser.add_argument("--use-running", action="store_true", help="measure `make run`'s stack")
    parser.add_argument(
        "--prescale",
        type=int,
        default=DEFAULT_PRESCALE,
        help=f"instances of {PRESCALED_SERVICE} before the search ({DEFAULT_PRESCALE}; "
        "0: the registry's 5)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output")
    parser.add_argument("--rates", help="comma-separated coarse rates (default: 200,400,...,1666)")
    parser.add_argument(
        "--compare-group-commit",
        action="store_true",
        help="search twice, each on its own stack: the sandbox's group commit on, then off",
    )
    args = parser.parse_args(argv)
    if args.compare_group_commit and args.use_running:
        parser.error("--compare-group-commit starts its own stacks: not with --use-running")
    coarse = tuple(float(r) for r in args.rates.split(",")) if args.rates else COARSE_RPS
    started = time.monotonic()
    if args.compare_group_commit:
        runs = [measure(args, coarse, on) for on in (True, False)]
        report: dict[str, Any] = {
            "scenario": SCENARIO,
            "compareGroupCommit": True,
            "runs": runs,
            "bestRpsByMode": {("on" if r["groupCommit"] else "off"): r["bestRps"] for r in runs},
            "totalSec": round(time.monotonic() - started, 1),
        }
        print("\n" + ", ".join(f"group commit {m}: {b} RPS"
                                for m, b in report["bestRpsByMode"].items()))  # fmt: skip
    else:
        report = measure(args, coarse, None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out} in {report['totalSec']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
