"""Benchmark: generator capacity on this machine, this engine vs Locust vs wrk, one run.

    ./venv/bin/python -m bench.load_capacity [--duration 30] [--workers 2]
        [--rates 1000,1666,2500,3500,5000]

Against a minimal local HTTP target (``bench.targets minimal``, its own process), for
each rate in turn: this engine (``--workers`` processes, constant arrival rate) and
Locust (FastHttpUser with ``constant_throughput(1)``, as many users as the rate,
``--processes`` = workers) each run ``--duration`` seconds. A rate is *held* when the
achieved rate is within 1% of it (and, for this engine, under 1% of starts dropped).
Then ``wrk -t2 -c64`` runs the same time: the closed-loop ceiling of target + machine.
Prints JSON: every attempt, the highest rate each tool held, and the ratio.

wrk is the Debian package (``apt-get install -y wrk``; ``make setup`` installs it when
run as root); the benchmark installs nothing itself and reports wrk as missing.
"""

from __future__ import annotations

import argparse
import json
import os

from bench.loadpeers import engine, locust, target, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rates", default="1000,1666,2500,3500,5000")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    attempts = []
    held: dict[str, float] = {"pack391": 0.0, "locust": 0.0}
    with target("minimal") as url:
        for rate in rates:
            for tool, run in (("pack391", engine), ("locust", locust)):
                result = run(url, rate, args.duration, args.workers)
                attempts.append(result)
                print(json.dumps(result), flush=True)
                if result["held"]:
                    held[tool] = max(held[tool], rate)
        ceiling = wrk(url, args.duration)
        print(json.dumps(ceiling), flush=True)
    ratio = held["pack391"] / held["locust"] if held["locust"] else None
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "durationSec": args.duration,
                "workers": args.workers,
                "heldRps": held,
                "wrkClosedLoopRps": ceiling.get("achievedRps"),
                "pack391OverLocust": round(ratio, 2) if ratio else None,
                "swipeLoad1666Held": held["pack391"] >= 1666,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
