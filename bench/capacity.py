"""The capacity model of docs/scaling-out.md, computed from ``make bench-ratelimit``'s
measured cost per decision (``.local/bench-ratelimit.json``).

    make bench-ratelimit && ./venv/bin/python -m bench.capacity [--json PATH]
                                         [--callable-cpu-ms 0.8] [--case "swipe, signed in"]

For the spec's swipe_load rate (1,666 RPS) and 10x and 100x of it, with every request
decided once by the rate limiter (``case``: its cost row), it prints the Markdown tables
of docs/scaling-out.md:

- **Redis**: one primary's utilisation (its CPU per decision x the rate), and the shards a
  Redis Cluster needs to keep each at the target (the cluster's CPU per decision summed
  over its shards, x the rate, / the target per shard); the commands per decision and the
  rate at which one primary saturates;
- **instances** of the callable: the rate x its CPU per request / the target (Cloud Run's
  autoscaler keeps each instance at 60 % CPU), against the default ``max_instances``;
- **network**: the bytes per decision (of the Redis that rate needs) x the rate, against a
  Serverless VPC Access connector's throughput per instance (Google's figures, cited
  below).

The targets are Cloud Run's and a conservative one for Redis (60 %). The CPU figures are
this machine's: a Memorystore vCPU and a Cloud Run vCPU are not this machine's core, so
the tables say where the ceilings are in proportion, and docs/scaling-out.md says to
measure the deployed revision before trusting the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from shared import thresholds as t

DEFAULT_JSON = Path(__file__).resolve().parents[1] / ".local" / "bench-ratelimit.json"

SPEC_RPS = t.LOAD_TEST_SCENARIOS["swipe_load"][0]
"""The spec's swipe_load rate: 1,666 requests per second."""
MULTIPLES = (1, 10, 100)
TARGET_UTILISATION = 0.6
"""Cloud Run's autoscaler keeps instances at 60 % CPU; the same margin for a Redis shard."""
DEFAULT_MAX_INSTANCES = 100
"""``PACK391_MAX_INSTANCES_USER``'s default (shared/config/common.py)."""
CALLABLE_CPU_MS = 0.8
"""``pack391_checkRateLimit``'s CPU per signed-in request on one Redis, measured through
functions-framework's gunicorn (docs/traffic-protection.md, A ceiling on the bill)."""
CONNECTOR_MBPS = {"e2-micro": 200, "e2-standard-4": 3200, "f1-micro": 100}
"""Serverless VPC Access throughput per connector instance, by machine type (Google:
https://cloud.google.com/vpc/docs/serverless-vpc-access#scaling); 2 to 10 instances."""
CONNECTOR_MAX_INSTANCES = 10
WIRE_OVERHEAD = 1.5
"""TCP/IP headers and ACKs on top of the Redis protocol bytes INFO counts (small packets)."""


def rows(costs: dict[str, Any], case: str, callable_cpu_ms: float) -> dict[str, list[str]]:
    """The three tables' rows, one per multiple of the spec's rate."""
    one = costs["single"][case]
    many = costs["cluster"][case]
    client_extra_ms = max(0.0, (many["clientCpuUs"] - one["clientCpuUs"]) / 1000)
    saturate_one = 1e6 / one["redisCpuUs"]
    out: dict[str, list[str]] = {"redis": [], "instances": [], "network": []}
    for k in MULTIPLES:
        rps = SPEC_RPS * k
        util = rps * one["redisCpuUs"] / 1e6
        shards = max(1, math.ceil(rps * many["redisCpuUs"] / 1e6 / TARGET_UTILISATION))
        out["redis"].append(
            f"| {k}x ({rps:,.0f} RPS) | {rps * one['redisCommands']:,.0f} | "
            f"{util * 100:.0f} % | {'yes' if util <= TARGET_UTILISATION else '**no**'} | "
            f"{shards} (+ a replica each) |"
        )
        for mode, cpu_ms in (
            ("one Redis", callable_cpu_ms),
            ("cluster", callable_cpu_ms + client_extra_ms),
        ):
            needed = math.ceil(rps * cpu_ms / 1000 / TARGET_UTILISATION)
            fits = needed * 2 <= DEFAULT_MAX_INSTANCES
            setting = DEFAULT_MAX_INSTANCES if fits else max(needed * 2, DEFAULT_MAX_INSTANCES)
            out["instances"].append(
                f"| {k}x | {mode} | {cpu_ms:.2f} ms | {needed} | {needed * 2} | "
                f"{'yes' if fits else '**no**'} | {setting} |"
            )
        on = one if util <= TARGET_UTILISATION else many  # the Redis this rate needs
        mbps = rps * on["netBytes"] * WIRE_OVERHEAD * 8 / 1e6
        micro = math.ceil(mbps / (CONNECTOR_MBPS["e2-micro"] * TARGET_UTILISATION))
        std = math.ceil(mbps / (CONNECTOR_MBPS["e2-standard-4"] * TARGET_UTILISATION))
        choice = (
            f"e2-micro, min 2 max {max(2, micro) if micro <= CONNECTOR_MAX_INSTANCES else 10}"
            if micro <= CONNECTOR_MAX_INSTANCES
            else f"e2-standard-4, max {max(2, std)}, or Direct VPC egress"
        )
        out["network"].append(
            f"| {k}x | {mbps:,.1f} Mbps | {max(2, micro)} | {max(2, std)} | {choice} |"
        )
    ceiling_rps = DEFAULT_MAX_INSTANCES * TARGET_UTILISATION / (callable_cpu_ms / 1000)
    out["saturation"] = [
        f"One primary saturates at about {saturate_one:,.0f} decisions/s "
        f"({saturate_one * TARGET_UTILISATION:,.0f} at {TARGET_UTILISATION:.0%}): "
        f"{saturate_one / SPEC_RPS:.1f}x the spec's rate. The default ceiling of "
        f"{DEFAULT_MAX_INSTANCES} instances holds {ceiling_rps:,.0f} RPS per callable "
        f"({ceiling_rps / SPEC_RPS:.0f}x the spec's rate)."
    ]
    return out


def render(costs: dict[str, Any], case: str, callable_cpu_ms: float) -> str:
    r = rows(costs, case, callable_cpu_ms)
    one = costs["single"][case]
    many = costs["cluster"][case]
    lines = [
        f"Per decision ({case}): {one['slots']:.0f} hash slots, {one['keys']:.0f} keys (one "
        f"script call on one Redis, one per slot on the cluster); Redis commands "
        f"{one['redisCommands']:.2f} / {many['redisCommands']:.2f}; Redis CPU "
        f"{one['redisCpuUs']:.1f} µs on one Redis, {many['redisCpuUs']:.1f} µs summed over "
        f"the cluster's shards; client CPU {one['clientCpuUs']:.1f} / "
        f"{many['clientCpuUs']:.1f} µs; bytes to and from Redis {one['netBytes']:.0f} / "
        f"{many['netBytes']:.0f} (one Redis / the cluster).",
        "",
        "| rate | Redis commands/s | one primary's CPU | fits one primary at 60 %? "
        "| cluster shards at 60 % |",
        "|---|---|---|---|---|",
        *r["redis"],
        "",
        "| rate | Redis | CPU per request | instances at 60 % | with 2x headroom "
        "| within the default 100? | `PACK391_MAX_INSTANCES_USER` |",
        "|---|---|---|---|---|---|---|",
        *r["instances"],
        "",
        "| rate | to and from Redis | e2-micro instances at 60 % "
        "| e2-standard-4 instances at 60 % | connector |",
        "|---|---|---|---|---|",
        *r["network"],
        "",
        *r["saturation"],
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="bench.ratelimit's JSON")
    parser.add_argument("--case", default="swipe, signed in", help="the cost row to size by")
    parser.add_argument(
        "--callable-cpu-ms",
        type=float,
        default=CALLABLE_CPU_MS,
        help="the callable's CPU per request on one Redis, ms",
    )
    args = parser.parse_args()
    data = json.loads(args.json.read_text())
    print(render(data["costPerDecision"], args.case, args.callable_cpu_ms))


if __name__ == "__main__":
    main()
