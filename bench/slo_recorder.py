"""What recording a call for the error budgets costs an instance, against what every
request already pays: the traffic counters of the DDoS detector
(:class:`shared.ratelimit.counters.CounterBuffer`, the peer: the same job of counting a
request per minute in memory and adding it to Redis about once a second).

Both record ``calls`` requests in memory (distinct addresses for the counters, three
scopes for the recorder), then flush to a redis-server of their own; the figures are the
CPU per call of ``record`` and the Redis commands and bytes one flush of a second's calls
costs. ``make bench-slo``; figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from shared.ratelimit.counters import CounterBuffer
from shared.slo.recorder import SliRecorder
from stack.platform.datastores import start_redis


def _redis_stats(client: redis.Redis) -> tuple[int, int]:
    stats: dict[str, Any] = client.info("stats")
    commands = sum(
        int(v["calls"])
        for k, v in client.info("commandstats").items()
        if k not in ("cmdstat_info", "cmdstat_config")
    )
    return commands, int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])


def _measure(client: redis.Redis, record: Any, flush: Any, calls: int) -> dict[str, float]:
    client.config_resetstat()
    t0 = time.process_time()
    for i in range(calls):
        record(i)
    t1 = time.process_time()
    flush()
    t2 = time.process_time()
    commands, net = _redis_stats(client)
    return {
        "recordUsPerCall": round((t1 - t0) / calls * 1e6, 2),
        "flushMs": round((t2 - t1) * 1e3, 2),
        "redisCommandsPerFlush": commands,
        "netBytesPerFlush": net,
    }


def _recorder_round(
    client: redis.Redis, at: datetime, scopes: tuple[str, ...], calls: int
) -> dict[str, float]:
    rec = SliRecorder(lambda: client, dict, flush_every_sec=10**9)
    return _measure(client, lambda i: rec.record(at, scopes, i % 100 == 0, 20.0), rec.flush, calls)


def _counters_round(client: redis.Redis, minute: int, calls: int) -> dict[str, float]:
    buf = CounterBuffer(flush_every_sec=10**9)
    return _measure(
        client,
        lambda i: buf.record(minute, ("ai",), f"10.0.{i // 250}.{i % 250}", "fp"),
        lambda: buf.flush(client, client),
        calls,
    )


def run(calls: int, rounds: int) -> dict[str, Any]:
    child, url = start_redis(Path(tempfile.mkdtemp(prefix="pack391-bench-slo-")))
    client = redis.Redis.from_url(url)
    try:
        at = datetime.now(UTC)
        minute = int(at.timestamp()) // 60
        out: dict[str, list[dict[str, float]]] = {"sliRecorder": [], "trafficCounters": []}
        scopes = ("callable:pack391_checkRateLimit", "class:ai")
        for _ in range(rounds):
            out["sliRecorder"].append(_recorder_round(client, at, scopes, calls))
            out["trafficCounters"].append(_counters_round(client, minute, calls))
        best = {k: min(v, key=lambda r: r["recordUsPerCall"]) for k, v in out.items()}
        return {
            "calls": calls,
            "rounds": rounds,
            "best": best,
            "ratioRecordCpu": round(
                best["sliRecorder"]["recordUsPerCall"] / best["trafficCounters"]["recordUsPerCall"],
                2,
            ),
        }
    finally:
        client.close()
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per flush (a second's)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.calls, args.rounds), indent=2))


if __name__ == "__main__":
    main()
