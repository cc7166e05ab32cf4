"""Benchmark: a population that looks like launch day, under each launch-day attack.

    make bench-population   # = ./venv/bin/python -m bench.population [--scale N] [--json FILE]

Starts its own redis-server and Firestore emulator (never the machine's shared ones),
then runs :mod:`stack.population`: the control (legitimate traffic alone), then each
attack beside the same legitimate traffic, each from empty backends with its own warm-up,
on a simulated clock. Prints one row per scenario (legitimate requests denied, established
users denied because of someone else's traffic, the attack's first detection, its
requests admitted from the first full minute after detection, Redis memory growth net of
the control run and per million attack requests, extrapolated linearly) with a PASS/FAIL
per goal, and exits 1 when a goal fails.

There is no peer: no other rate limiter models this population, so the figures are
judged against the issue's goals, not a ratio (``make bench-ratelimit`` keeps the ratio
against ``limits``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from stack.platform import datastores, procs
from stack.population import (
    ATTACKS,
    AttackRow,
    Population,
    PopulationConfig,
    Scenario,
    all_passed,
    format_table,
    rows_json,
)

PROJECT = "demo-pack391-bench"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="population sizes and attack rates times this (1: about 3,000 legitimate "
        "requests a simulated minute)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.value for s in ATTACKS],
        help="run only these attacks (repeatable; default: every one)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    scenarios = [Scenario(s) for s in args.scenario] if args.scenario else list(ATTACKS)

    # the detector logs every detection (and held action) of every simulated minute
    logging.getLogger("pack391").setLevel(logging.CRITICAL)
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-bench-population-"))
    os.environ.setdefault("GCLOUD_PROJECT", PROJECT)
    children: list[procs.Child] = []
    try:
        redis_child, url = datastores.start_redis(log_dir)
        children.append(redis_child)
        emulator, host = datastores.start_firestore_emulator(PROJECT, log_dir)
        children.append(emulator)
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        client = redis.Redis.from_url(url, decode_responses=True)
        db = datastores.firestore_client(host, PROJECT)

        def reset() -> None:
            client.flushall()
            datastores.wipe_firestore(host, PROJECT)

        def progress(row: AttackRow) -> None:
            goals = " ".join(f"{k} {v}" for k, v in row.goals().items())
            print(f"{row.scenario:28s} {row.real_sec:5.1f} s  {goals}", file=sys.stderr, flush=True)

        config = PopulationConfig().scaled(args.scale)
        rows = Population(client, db, config, reset).run_all(scenarios, progress)
        print(format_table(rows), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows_json(rows), indent=2))
        datastores.forget_wipe_connection(host)
    finally:
        for child in reversed(children):
            child.stop()
    return 0 if all_passed(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
