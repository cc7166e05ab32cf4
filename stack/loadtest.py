"""``pack391 loadtest SCENARIO``: run a scenario from this machine, in worker processes.

Each worker runs one shard (the same engine as ``pack391_executeLoadTest``) and sends
its per-second histograms back over a queue; this process merges them exactly, shows
live progress, and writes the JSON summary and the HTML report. The exit code is 0
when every threshold holds, 1 when one fails (a CI gate), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from functions.load.engine import Progress, ShardRunner
from functions.load.policy import cap_problem, parse_allowlist, target_problem
from functions.load.report import render_html
from functions.load.results import (
    Seconds,
    crash_map,
    heatmap,
    merge,
    seconds_from_json,
    seconds_to_json,
    summarize,
    timeline,
)
from functions.load.scenarios import Plan, build_plan, new_run_id
from shared import thresholds as t
from shared.clock import utc_now
from stack.constants import LOAD_TEST_ABORT_WITHIN_SEC, LOAD_TEST_PROGRESS_EVERY_SEC


def sandbox_port() -> int:
    """Where ``pack391 serve`` serves the sandbox: PACK391_SANDBOX_PORT (5002)."""
    return int(os.environ.get("PACK391_SANDBOX_PORT", "5002"))


DEFAULT_TARGET = f"http://127.0.0.1:{sandbox_port()}"
"""The local stack's sandbox (``pack391 serve``)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "loadtest",
        help="run a load-test scenario from this machine (exit 1 when a threshold fails)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", choices=sorted(t.LOAD_TEST_SCENARIOS))
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"base URL (default {DEFAULT_TARGET})")
    p.add_argument("--rps", type=float, help="peak requests per second (default: the spec's)")
    p.add_argument("--duration", type=int, help="seconds (default: the spec's)")
    p.add_argument("--workers", type=int, help="worker processes = shards (default: by rate)")
    p.add_argument("--timeout", type=float, help="per-request timeout, seconds")
    p.add_argument("--p95-ms", type=float, help="p95 threshold override")
    p.add_argument("--p99-ms", type=float, help="p99 threshold override")
    p.add_argument("--abort-on-fail", action="store_true", help="stop on a sustained breach")
    p.add_argument("--report", type=Path, help="write the HTML report here")
    p.add_argument("--json", type=Path, help="write the JSON summary here")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    p.set_defaults(func=cmd_loadtest)


def _worker(
    run_id: str, plan_json: dict[str, Any], shard: int, start_at: float, out: Any, stop: Any
) -> None:
    plan = Plan.from_json(plan_json)

    def sink(seconds: Seconds, progress: Progress) -> None:
        out.put(("slice", shard, seconds_to_json(seconds), vars(progress).copy()))

    last = [0.0]

    def tick(progress: Progress) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            out.put(("progress", shard, None, vars(progress).copy()))

    def check() -> str | None:
        return "stopped from the command line" if stop.is_set() else None

    runner = ShardRunner(run_id, plan, shard, abort_check=check, sink=sink, on_tick=tick)
    outcome, rest = runner.run(start_at)
    out.put(("slice", shard, seconds_to_json(rest), vars(outcome.progress).copy()))
    done = {
        "status": outcome.status,
        "reason": outcome.abort_reason,
        "elapsedSec": outcome.elapsed_sec,
    }
    out.put(("done", shard, done, vars(outcome.progress).copy()))


def _line(plan: Plan, progress: dict[int, dict[str, Any]]) -> str:
    rows = list(progress.values())
    elapsed = max((r["elapsed_sec"] for r in rows), default=0.0)
    sent = sum(r["sent"] for r in rows)
    rate = sent / elapsed if elapsed > 0 else 0.0
    wanted = sum(r["scheduled"] for r in rows) / elapsed if elapsed > 0 else 0.0
    p95 = max((r["recent_p95_ms"] for r in rows), default=0.0)
    return (
        f"{elapsed:6.1f}/{plan.duration_sec}s  sent {rate:8.1f}/s of {wanted:8.1f}/s scheduled  "
        f"p95(last s) {p95:8.1f} ms  errors {sum(r['errors'] for r in rows):6d}  "
        f"shed {sum(r.get('shed', 0) for r in rows):6d}  "
        f"dropped {sum(r['dropped'] for r in rows):6d}  in flight "
        f"{sum(r['in_flight'] for r in rows):5d}"
    )


class ProgressPrinter:
    """Live progress on ``stream``: on a terminal one line rewritten in place (``\\r``)
    at every update; otherwise (a pipe, a CI log, a file) a whole line at most every
    ``every_sec``, so the log gets readable lines instead of one endless one."""

    def __init__(
        self,
        stream: IO[str],
        every_sec: float = LOAD_TEST_PROGRESS_EVERY_SEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every_sec = every_sec
        self.clock = clock
        self.tty = stream.isatty()
        self._last: float | None = None
        self._pending: str | None = None

    def show(self, text: str) -> None:
        if self.tty:
            print(f"\r{text}", end="", file=self.stream, flush=True)
            self._pending = text
            return
        now = self.clock()
        if self._last is None or now - self._last >= self.every_sec:
            print(text, file=self.stream, flush=True)
            self._last, self._pending = now, None
        else:
            self._pending = text

    def end(self) -> None:
        """Ends the live line (terminal) or prints the last state not yet shown (log)."""
        if self.tty:
            print(file=self.stream, flush=True)
        elif self._pending is not None:
            print(self._pending, file=self.stream, flush=True)
        self._pending = None


def run_local(
    plan: Plan,
    run_id: str,
    quiet: bool = True,
    progress_every_sec: float = LOAD_TEST_PROGRESS_EVERY_SEC,
) -> dict[str, Any]:
    """Run ``plan`` in ``plan.shards`` worker processes; the merged results. Unless
    ``quiet``, progress goes to stderr (see :class:`ProgressPrinter`)."""
    # fork, not spawn: a spawned worker re-imports this CLI (about 0.7 CPU-s each, the
    # largest share of a 30 s run's CPU). Safe here: the parent has opened no gRPC
    # channel, started no thread and runs no event loop when it forks (each worker makes
    # its own loop and connections).
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    stop = ctx.Event()
    start_at = time.time() + 1.5
    workers = [
        ctx.Process(target=_worker, args=(run_id, plan.to_json(), k, start_at, out, stop))
        for k in range(plan.shards)
    ]
    for w in workers:
        w.start()
    printer = ProgressPrinter(sys.stderr, progress_every_sec)
    parts: list[Seconds] = []
    progress: dict[int, dict[str, Any]] = {}
    outcomes: dict[int, dict[str, Any]] = {}
    try:
        while len(outcomes) < plan.shards:
            try:
                kind, shard, payload, prog = out.get(timeout=0.5)
            except queue.Empty:
                if not any(w.is_alive() for w in workers) and out.empty():
                    raise RuntimeError("a load worker died without reporting") from None
                continue
            progress[shard] = prog
            if kind == "slice" and payload:
                parts.append(seconds_from_json(payload))
            elif kind == "done":
                outcomes[shard] = payload
            if not quiet:
                printer.show(_line(plan, progress))
    except KeyboardInterrupt:
        stop.set()
        print("\nstopping every worker...", file=sys.stderr)
        while len(outcomes) < plan.shards:
            kind, shard, payload, prog = out.get(timeout=LOAD_TEST_ABORT_WITHIN_SEC + 5)
            if kind == "slice" and payload:
                parts.append(seconds_from_json(payload))
            elif kind == "done":
                outcomes[shard] = payload
    finally:
        for w in workers:
            w.join(10)
    if not quiet:
        printer.end()
    seconds = merge(parts)
    elapsed = max(o["elapsedSec"] for o in outcomes.values())
    aborted = [o["reason"] for o in outcomes.values() if o["status"] == "aborted"]
    return {
        "runId": run_id,
        "status": "aborted" if aborted else "completed",
        "abortReason": aborted[0] if aborted else None,
        "plan": plan.to_json(),
        "summary": summarize(seconds, plan.thresholds, elapsed, plan.rps),
        "timeline": timeline(seconds),
        "heatmap": heatmap(seconds),
        "crashMap": crash_map(seconds),
        "failoverLog": [],
    }


def cmd_loadtest(args: argparse.Namespace) -> int:
    plan = build_plan(
        args.scenario,
        args.target,
        rps=args.rps,
        duration_sec=args.duration,
        shards=args.workers,
        timeout_sec=args.timeout,
        abort_on_fail=args.abort_on_fail,
        thresholds={
            k: v for k, v in (("p95_ms", args.p95_ms), ("p99_ms", args.p99_ms)) if v is not None
        },
    )
    allowlist = parse_allowlist(os.environ.get("PACK391_LOAD_TARGET_ALLOWLIST", ""))
    problem = target_problem(plan.target, allowlist, local_mode=True) or cap_problem(
        plan.rps, [], t.LOAD_TEST_GLOBAL_RPS_CAP
    )
    if problem is not None:
        print(f"pack391 loadtest: {problem}", file=sys.stderr)
        return 2
    if not 1 <= plan.shards <= t.LOAD_TEST_MAX_SHARDS:
        print(f"pack391 loadtest: --workers must be 1..{t.LOAD_TEST_MAX_SHARDS}", file=sys.stderr)
        return 2
    run_id = new_run_id(utc_now())
    if not args.quiet:
        print(
            f"{plan.scenario_id} ({plan.type.value}, {plan.shape.value}): {plan.rps:g} RPS peak "
            f"for {plan.duration_sec} s on {plan.shards} worker(s) against {plan.target} "
            f"(run {run_id})",
            file=sys.stderr,
        )
    result = run_local(plan, run_id, quiet=args.quiet)
    s = result["summary"]
    brief = {
        "runId": run_id,
        "scenarioId": plan.scenario_id,
        "status": result["status"],
        "targetRps": plan.rps,
        "achievedRps": s["achievedRps"],
        "scheduledRps": s["scheduledRps"],
        "requests": s["requests"],
        "errors": s["errors"],
        "errorsByKind": s["errorsByKind"],
        "errorRatePct": s["errorRatePct"],
        "shed": s["shed"],
        "shedRatePct": s["shedRatePct"],
        "dropped": s["dropped"],
        "late": s["late"],
        "latencyMs": s["latencyMs"],
        "thresholds": s["thresholds"],
        "verdict": s["verdict"],
    }
    print(json.dumps(brief, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result | {"brief": brief}, indent=2))
    if args.report:
        args.report.write_text(
            render_html(
                run_id, result["plan"], s, result["timeline"], result["heatmap"],
                result["crashMap"], result["failoverLog"],
            )
        )  # fmt: skip
    return 0 if s["verdict"] == "pass" else 1
