"""``pack391 chaos-run``: apply each fault of :mod:`stack.chaos.faults` during a load run and
check the invariants over the recorded history.

For each fault, one scenario of ``before + during + after`` seconds runs against the
local stack (``pack391 serve``):

- ``swipe_load`` against the sandbox, open model (starts on schedule whatever the
  target does, the mix and payloads of ``functions/load/scenarios.py``);
- market signups (verified tokens, distinct uids) in a soft-launch market of its own
  (a country per fault) with a small ``trafficLimit``;
- ``pack391_walletBruteForceShield`` attempts and ``pack391_checkRateLimit`` for the
  auth, wallet, payment, swipe and general classes;
- the scale guard, the deploy monitor and live metrics, triggered as Cloud Scheduler
  does, once while the fault is on and again after it is undone until a run completes;
- for the Cloud Run stall (``cloudrun-slow``), a manual scale once during and once after.

Every request is recorded (op, class, start, end, HTTP status, error status, reason,
retryAfterSec, the answer's fields). After the ``after`` phase the runner triggers
``pack391_syncMarkets``, reads each market's admissions from Firestore and its member
set from Redis, reads the jobs' records, and runs the checkers of
:mod:`stack.chaos_check` (the runner: :mod:`stack.chaos.runner`). The report
(``.local/chaos/report.json``, and a table on stdout) gives, per fault, requests by
outcome before/during/after, the time to recovery, each function's longest answer
against its budget (the answer-time invariant: every call within its function's budget
+ 1 s), and each invariant held or broken with its first counterexample. Exit 1 when an
invariant breaks.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from stack.chaos.config import ALL_FAULTS, DEFAULT_OUT, ChaosConfig


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "chaos-run",
        help="apply each fault during a load run; check the invariants (exit 1 if one breaks)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--faults", nargs="+", default=list(ALL_FAULTS), metavar="FAULT")
    p.add_argument("--before", type=float, default=3.0, help="seconds of load before the fault")
    p.add_argument("--during", type=float, default=8.0, help="seconds the fault is on")
    p.add_argument("--after", type=float, default=12.0, help="seconds of load after the undo")
    p.add_argument("--swipe-rps", type=float, default=100.0)
    p.add_argument("--traffic-limit", type=int, default=10)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory")
    p.add_argument(
        "--serve",
        action="store_true",
        help="start a `pack391 serve` of its own on free ports (default: the running stack's "
        "state file, PACK391_STACK_STATE or .local/stack.json)",
    )
    p.set_defaults(func=cmd_chaos_run)


def cmd_chaos_run(args: argparse.Namespace) -> int:
    config = replace(
        ChaosConfig(),
        faults=tuple(args.faults),
        before_sec=args.before,
        during_sec=args.during,
        after_sec=args.after,
        swipe_rps=args.swipe_rps,
        traffic_limit=args.traffic_limit,
        out_dir=args.out,
    )
    # the runner (aiohttp, the load scenarios, the Firestore client) only when it runs
    from stack.chaos.report import render_table
    from stack.chaos.runner import run_chaos
    from stack.platform import harness
    from stack.platform.handle import StackHandle

    try:
        if args.serve:
            with harness.serve_stack(args.out / "logs", args.out / "stack.json") as handle:
                report = run_chaos(handle, config)
        else:
            report = run_chaos(handle=StackHandle.load(), config=config)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # a StackError too
        print(f"pack391 chaos-run: {exc}", file=sys.stderr)
        return 2
    print(render_table(report))
    print(f"report: {config.out_dir / 'report.json'}")
    return 0 if report["held"] else 1
