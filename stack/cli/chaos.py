"""``pack391 chaos FAULT``: apply one fault to the running stack (its state
file, ``.local/stack.json``) for a while, undo it and report the recovery
(:mod:`stack.chaos.faults`), and how long the calls made meanwhile took to answer: a few
functions are probed while the fault is on (:mod:`stack.chaos.probe`; ``--no-probe``:
none), each answer held to its function's budget (exit 1 when one took longer)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import requests

from stack.chaos import faults
from stack.platform import procs
from stack.platform.handle import StackHandle


def add_parser(sub: Any) -> None:
    chaos = sub.add_parser(
        "chaos",
        help="apply a fault to the running stack for a while, then undo it",
        description="faults:\n" + faults.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chaos.add_argument("fault", choices=faults.FAULTS)
    chaos.add_argument("--for", dest="seconds", type=float, default=10.0, help="seconds (10)")
    chaos.add_argument(
        "--delay-ms",
        type=float,
        help="redis-slow: delay per command (200); cloudrun-slow: per Cloud Run call (30000)",
    )
    chaos.add_argument("--error-pct", type=float, help="sandbox-errors: share of 500s (50)")
    chaos.add_argument(
        "--recover-sec", type=float, help="how long to wait for health after the undo (60)"
    )
    chaos.add_argument(
        "--no-probe",
        action="store_true",
        help="call nothing while the fault is on (default: probe a few functions and hold "
        "each answer to its budget)",
    )
    chaos.add_argument(
        "--state", help="the stack's state file (default $PACK391_STACK_STATE or .local/stack.json)"
    )
    chaos.set_defaults(func=cmd_chaos)


def cmd_chaos(args: argparse.Namespace) -> int:
    """Apply a fault to the running stack (``.local/stack.json``) for ``--for`` seconds."""
    # the probes (requests, the checkers, the bundle for its budgets) only when it runs
    from stack import chaos_check as cc
    from stack.chaos.budgets import stack_budgets
    from stack.chaos.config import CLOUD_RUN_FAULTS
    from stack.chaos.probe import Prober, probes_for, register_stand_in, summary

    try:
        handle = StackHandle.load(Path(args.state) if args.state else None)
        for line in faults.reap(handle):
            print(line, flush=True)
        options: dict[str, float] = {"max_sec": args.seconds + faults.LEASE_GRACE_SEC}
        if args.delay_ms is not None:
            options["delay_ms"] = args.delay_ms
        if args.error_pct is not None:
            options["error_pct"] = args.error_pct
        if args.recover_sec is not None:
            options["recover_sec"] = args.recover_sec
        # before the fault: the bundle's import (for its budgets) takes seconds
        budgets = {} if args.no_probe else stack_budgets(handle)
        if not args.no_probe and args.fault in CLOUD_RUN_FAULTS:
            register_stand_in(handle)  # the manual scale probe goes through it
        undo = faults.start_fault(handle, args.fault, **options)
    except (procs.StackError, OSError, requests.RequestException, RuntimeError) as exc:
        print(f"pack391 chaos: {exc}", file=sys.stderr)
        return 2
    prober = None if args.no_probe else Prober(handle, probes_for(args.fault)).start()
    notes = getattr(undo, "notes", "")
    print(f"{args.fault}: applied for {args.seconds:g}s ({notes})", flush=True)
    interrupted = False
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if prober is not None:
            prober.halt()  # no new call once the fault is undone
        window = undo()
    outage = window.undone_at - window.started_at
    if window.recovered_at is None:
        print(f"{args.fault}: undone after {outage:.1f}s but NOT recovered ({window.notes})",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    print(
        f"{args.fault}: undone after {outage:.1f}s, recovered in "
        f"{window.recovered_at - window.undone_at:.1f}s ({window.notes})",
        flush=True,
    )
    held = True
    if prober is not None:
        calls = prober.stop()  # the calls still in flight answer (bounded)
        span = cc.Window(args.fault, window.started_at, window.undone_at, window.recovered_at)
        verdict, lines = summary(calls, span, budgets)
        print(f"{args.fault}: {len(calls)} calls made while it was on:", flush=True)
        print("\n".join(lines), flush=True)
        held = verdict.held
    return 130 if interrupted else (0 if held else 1)
