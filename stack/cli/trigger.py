"""``pack391 trigger``: run a scheduled function of the local stack now, with the POST and
headers Cloud Scheduler sends (:func:`stack.platform.scheduler.fire`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import requests

from shared.config import FUNCTIONS_REGION, project_id
from stack.cli import caller
from stack.platform.scheduler import fire


def add_parser(sub: Any) -> None:
    trigger = sub.add_parser(
        "trigger", help="run a scheduled function now, as Cloud Scheduler would"
    )
    trigger.add_argument("name", help="function name, e.g. pack391_syncMarkets")
    trigger.set_defaults(func=cmd_trigger)


def cmd_trigger(args: argparse.Namespace) -> int:
    base = caller.local_base_url()
    try:
        status = fire(base, project_id(), FUNCTIONS_REGION.value, args.name, datetime.now(UTC))
    except requests.RequestException as exc:
        print(f"pack391 trigger: cannot reach the local stack at {base}: {exc}", file=sys.stderr)
        return 3
    if status == 200:
        print(f"{args.name}: ok")
        return 0
    print(f"{args.name}: failed with HTTP {status} (see the functions log)", file=sys.stderr)
    return 1
