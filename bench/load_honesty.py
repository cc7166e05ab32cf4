"""Benchmark: coordinated omission. This engine vs Locust against a stalling target.

    ./venv/bin/python -m bench.load_honesty [--rps 200] [--duration 30]

The target (``bench.targets stalling``) answers in 10 ms but freezes every request for
1 s once every 10 s. An open-model generator keeps its schedule through the freeze and
counts the wait in each request's latency, so its p99 shows the stall (well above
100 ms) while its achieved rate stays on target. Locust (FastHttpUser,
``constant_throughput(1)``, one user per request per second) runs the same rate beside it.
"""

from __future__ import annotations

import argparse
import json

from bench.loadpeers import engine, locust, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with target("stalling", "--answer-ms", "10", "--period", "10", "--stall", "1") as url:
        ours = engine(url, args.rps, args.duration, args.workers)
        print(json.dumps(ours), flush=True)
    with target("stalling", "--answer-ms", "10", "--period", "10", "--stall", "1") as url:
        theirs = locust(url, args.rps, args.duration, args.workers)
        print(json.dumps(theirs), flush=True)
    print(
        json.dumps(
            {
                "targetRps": args.rps,
                "pack391": {k: ours[k] for k in ("achievedRps", "p50Ms", "p99Ms", "droppedPct")},
                "locust": {k: theirs[k] for k in ("achievedRps", "p50Ms", "p99Ms")},
                "stallShownByPack391": ours["p99Ms"] > 100,
                "pack391RateOnTarget": abs(ours["achievedRps"] - args.rps) <= 0.01 * args.rps,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
