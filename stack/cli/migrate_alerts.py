"""``pack391 migrate-alerts``: the one-shot move to one alert model
(:mod:`stack.migrate_alerts`). Idempotent: a second run changes nothing."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "migrate-alerts",
        help="one-shot move to one alert model: scaling events, legacy alerts (idempotent)",
    )
    parser.add_argument(
        "--firestore", help="emulator HOST:PORT (default $FIRESTORE_EMULATOR_HOST; none: GCP)"
    )
    parser.add_argument(
        "--delete-old",
        action="store_true",
        help="then delete pack391_scaling_alerts and pack391_backup_alerts",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Migrate the configured project's Firestore (the emulator given, or production)."""
    from shared.firestore import get_db, reset_clients
    from stack.migrate_alerts import migrate

    if args.firestore:
        os.environ["FIRESTORE_EMULATOR_HOST"] = args.firestore
        reset_clients()
    report = migrate(get_db(), datetime.now(UTC), delete_old=args.delete_old)
    print(
        f"scaling events: {report.events_copied} copied, {report.events_present} already there; "
        f"alerts: {report.alerts_converted} converted, {report.alerts_current} already current; "
        f"keys claimed: {len(report.keys_claimed)}",
        file=sys.stdout,
    )
    for name, count in report.deleted.items():
        print(f"deleted {count} documents of {name}")
    return 0
