"""Benchmark: the generator's own CPU per request, this engine vs Locust vs wrk, one run.

    ./venv/bin/python -m bench.load_cpu [--rps 2000] [--duration 30] [--workers 1,2]
        [--locust-processes 2]

Against the same minimal keep-alive target (``bench.targets minimal``, its own
process), one after the other:

- this engine: ``pack391 loadtest live_calls --rps RPS --workers N`` for each N of
  ``--workers`` (the whole CLI: start-up imports, worker processes, merging, the
  summary);
- Locust ``FastHttpUser`` at the same rate (``constant_throughput(1)``, RPS users,
  ``--processes`` = ``--locust-processes``: two, which it needs to come near 2,000 RPS);
- ``wrk -t2 -c64``, closed loop: the ceiling of target + machine.

Each runs as a child process tree; its CPU is user + sys of the whole tree
(``resource.getrusage(RUSAGE_CHILDREN)`` before and after: every process of the tree
is waited for, as GNU time counts it). Reported per tool: requests, CPU seconds,
requests per CPU-second, achieved rate, latency percentiles; then the ratios. The
target: the engine at 2x Locust's requests per CPU-second or better, its achieved rate
within 1% of the asked rate, and nothing dropped.
"""

from __future__ import annotations

import argparse
import json
import os

from bench.loadpeers import engine_cli, locust, target, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rps", type=float, default=2000.0)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--workers", default="1,2", help="the engine's worker counts")
    parser.add_argument("--locust-processes", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated tools not to run")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, dict[str, object]] = {}
    with target("minimal") as url:
        for workers in [int(w) for w in args.workers.split(",")]:
            if "pack391" not in skip:
                result = engine_cli(url, args.rps, args.duration, workers)
                results[f"pack391/{workers}w"] = result | {"workers": workers}
                print(json.dumps(results[f"pack391/{workers}w"]), flush=True)
        if "locust" not in skip:
            results["locust"] = locust(url, args.rps, args.duration, args.locust_processes)
            print(json.dumps(results["locust"]), flush=True)
        if "wrk" not in skip:
            results["wrk"] = wrk(url, args.duration)
            print(json.dumps(results["wrk"]), flush=True)

    def per_cpu(tool: str) -> float | None:
        value = results.get(tool, {}).get("requestsPerCpuSec")
        return float(value) if isinstance(value, int | float) else None

    theirs, ceiling = per_cpu("locust"), per_cpu("wrk")
    verdicts = {}
    for tool in [k for k in results if k.startswith("pack391")]:
        ours, mine = per_cpu(tool), results[tool]
        achieved = mine.get("achievedRps")
        on_rate = isinstance(achieved, int | float) and abs(achieved - args.rps) <= 0.01 * args.rps
        over_locust = round(ours / theirs, 2) if ours and theirs else None
        verdicts[tool] = {
            "requestsPerCpuSec": ours,
            "overLocust": over_locust,
            "overWrk": round(ours / ceiling, 3) if ours and ceiling else None,
            "rateWithin1Pct": on_rate,
            "dropped": mine.get("dropped"),
            "targetMet": bool(
                over_locust and over_locust >= 2.0 and on_rate and mine.get("dropped") == 0
            ),
        }
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "targetRps": args.rps,
                "durationSec": args.duration,
                "requestsPerCpuSec": {"locust": theirs, "wrk": ceiling},
                "pack391": verdicts,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
