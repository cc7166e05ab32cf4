"""``pack391 seed-ops``: seed the app's source collections of the running stack's Firestore
emulator with known counts, for the ops dashboard (:mod:`stack.ops_seed`)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from shared.config import project_id


def add_parser(sub: Any) -> None:
    seed_ops = sub.add_parser(
        "seed-ops", help="seed the app's source collections with known counts (ops dashboard)"
    )
    seed_ops.add_argument(
        "--firestore", help="emulator HOST:PORT (default $FIRESTORE_EMULATOR_HOST)"
    )
    seed_ops.add_argument("--size", type=int, default=0, help="about this many documents")
    seed_ops.set_defaults(func=cmd_seed_ops)


def cmd_seed_ops(args: argparse.Namespace) -> int:
    """Seed the app's source collections of the running stack's emulator (ops dashboard)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from stack.ops_seed import SeedSpec, scaled, seed

    host = args.firestore or os.environ.get("FIRESTORE_EMULATOR_HOST")
    if not host:
        print(
            "pack391 seed-ops: give --firestore HOST:PORT (printed by `make run`)", file=sys.stderr
        )
        return 2
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    db = firestore.Client(project=project_id(), credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    spec = scaled(args.size) if args.size else SeedSpec()
    written = seed(db, spec, datetime.now(UTC))
    print(f"seeded {written} documents; run: ./venv/bin/pack391 trigger pack391_updateLiveMetrics")
    return 0
