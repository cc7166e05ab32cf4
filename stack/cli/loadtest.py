"""``pack391 loadtest SCENARIO``: run a scenario from this machine, in worker processes.
``pack391 loadtest --from-metrics WINDOW [--scale F]``: load shaped like production, the
recorded per-minute rates and mixes of a past window (START/END, START/PT1H or last:90m),
read from ``pack391_sli_minutes`` (the emulator when FIRESTORE_EMULATOR_HOST is set).

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
    p.add_argument("scenario", nargs="?", choices=sorted(t.LOAD_TEST_SCENARIOS))
    p.add_argument(
        "--from-metrics",
        metavar="WINDOW",
        help="replay a recorded window instead of a scenario: 2026-12-05T18:00Z/2026-12-05T19:00Z,"
        " 2026-12-05T18:00Z/PT1H or last:90m",
    )
    p.add_argument("--scale", type=float, default=1.0, help="--from-metrics: multiply the rates")
    p.add_argument(
        "--minute-sec",
        type=int,
        default=t.LOAD_TEST_FROM_METRICS_MINUTE_SEC,
        help="--from-metrics: seconds each recorded minute plays (60 real time; less compresses"
        " time, keeping each minute's rate: rehearsals, tests, windows over 25 minutes)",
    )
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="NAME=ENDPOINT",
        help="--from-metrics: play a recorded name that is not a load endpoint as this endpoint",
    )
    p.add_argument(
        "--firestore",
        metavar="HOST:PORT",
        help="--from-metrics: the Firestore emulator to read (default $FIRESTORE_EMULATOR_HOST;"
        " the local stack's is printed by `make run`; none: the project's Firestore with"
        " Application Default Credentials)",
    )
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


CLI_FIELDS = {
    "fromMetrics.scale": "--scale",
    "fromMetrics.minuteSec": "--minute-sec",
    "fromMetrics.map": "--map",
    "fromMetrics": "--from-metrics",
}
"""The request fields :mod:`functions.load.recorded` names, as this command's options."""


def _cli_problem(field: str, problem: str) -> str:
    option = next((o for f, o in CLI_FIELDS.items() if field.startswith(f)), field)
    return f"{option}: {problem}"


def _recorded(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The --from-metrics plan and its report; ValueError with the message to print."""
    from functions.load.recorded import parse_window, recorded_plan
    from functions.load.scenarios import Thresholds
    from shared.clock import utc_now
    from shared.errors import InvalidInput
    from stack.loadtest import read_minutes

    if args.rps is not None or args.duration is not None:
        raise ValueError("--rps and --duration do not go with --from-metrics (use --scale)")
    mapping: dict[str, str] = {}
    for item in args.map:
        name, sep, endpoint = item.partition("=")
        if not sep or not name or not endpoint:
            raise ValueError(f"--map: {item!r} is not NAME=ENDPOINT")
        mapping[name] = endpoint
    th = {k: v for k, v in (("p95_ms", args.p95_ms), ("p99_ms", args.p99_ms)) if v is not None}
    if args.firestore:
        os.environ["FIRESTORE_EMULATOR_HOST"] = args.firestore
    try:
        window = parse_window(args.from_metrics, utc_now())
        docs = read_minutes(window.start.timestamp(), window.end.timestamp())
        built = recorded_plan(
            docs, window, args.target, scale=args.scale, minute_sec=args.minute_sec,
            mapping=mapping, shards=args.workers, thresholds=Thresholds(**th),
            timeout_sec=args.timeout, abort_on_fail=args.abort_on_fail,
        )  # fmt: skip
    except InvalidInput as exc:
        raise ValueError(_cli_problem(exc.field, str(exc).removeprefix(f"{exc.field}: "))) from None
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    return built.plan, built.report


def _show_report(report: dict[str, Any]) -> None:
    window = report["window"]
    print(
        f"from metrics {window['start']}/{window['end']}: {report['recordedMinutes']} of "
        f"{window['minutes']} minutes recorded ({report['missingMinutes']} missing: played at "
        f"zero rate), {report['recordedRequests']} requests recorded, "
        f"{report['plannedRequests']} planned at scale {report['scale']:g}, "
        f"{report['minuteSec']} s per minute",
        file=sys.stderr,
    )
    if report["unmapped"]:
        names = ", ".join(f"{n} ({c})" for n, c in report["unmapped"].items())
        print(
            f"not replayed ({report['unmappedPct']:g} % of requests; --map NAME=ENDPOINT to "
            f"replay them): {names}",
            file=sys.stderr,
        )


def cmd_loadtest(args: argparse.Namespace) -> int:
    # the engine (functions.load, its HTTP client) only when a scenario runs
    from functions.load.policy import cap_problem, parse_allowlist, target_problem
    from functions.load.report import render_html
    from functions.load.scenarios import build_plan, new_run_id
    from shared.clock import utc_now
    from stack.loadtest import run_local

    if (args.scenario is None) == (args.from_metrics is None):
        print("pack391 loadtest: give a SCENARIO or --from-metrics WINDOW", file=sys.stderr)
        return 2
    report: dict[str, Any] | None = None
    if args.from_metrics is not None:
        try:
            plan, report = _recorded(args)
        except ValueError as exc:
            print(f"pack391 loadtest: {exc}", file=sys.stderr)
            return 2
        if not args.quiet:
            _show_report(report)
    else:
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
    if report is not None:
        brief["fromMetrics"] = report
        result["plan"] = result["plan"] | {"fromMetrics": report}
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
