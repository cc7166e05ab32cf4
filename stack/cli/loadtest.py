"""``pack391 loadtest SCENARIO``: run a scenario from this machine, in worker processes.

Each worker runs one shard (the same engine as ``pack391_executeLoadTest``) and sends
its per-second histograms back over a queue; this process merges them exactly, shows
live progress, and writes the JSON summary and the HTML report. The exit code is 0
when every threshold holds, 1 when one fails (a CI gate), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared import thresholds as t


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


def cmd_loadtest(args: argparse.Namespace) -> int:
    # the engine (functions.load, its HTTP client) only when a scenario runs
    from functions.load.policy import cap_problem, parse_allowlist, target_problem
    from functions.load.report import render_html
    from functions.load.scenarios import build_plan, new_run_id
    from shared.clock import utc_now
    from stack.loadtest import run_local

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
