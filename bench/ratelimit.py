"""Benchmark: this limiter's full decision against the `limits` library, and on one Redis
against a three-primary Redis Cluster, in one run.

    make bench-ratelimit   # = ./venv/bin/python -m bench.ratelimit [--seconds 10] [--json FILE]

Starts its own redis-server and its own Redis Cluster (three primaries on loopback,
``stack.platform.datastores.start_redis_cluster``; never the machine's shared ones). For
each implementation, one decision is the same work: a user bucket and an IP bucket both
consulted, plus the block check.

- pack391: ``RateLimiter.decide`` (one pipelined round trip: a script in the user's hash
  slot (their bucket, blocks and panic pass) and one in the address's (its bucket and
  blocks), the country cap's when a cap is set; DDoS mode from the instance's copy; plus
  the detector's counters, added to the instance's buffer and flushed to Redis about once
  a second, included).
- pack391 on the cluster: the same decisions with ``REDIS_URL=redis+cluster://...``: the
  cluster client, each script routed to the primary of its slot.
- pack391 full front-door decision: what a deployed callable does per request,
  ``RateLimiter.door`` (the pre-auth address counter, batched in memory, and the
  blocked-address check against the instance's copy, re-read about once a second)
  then ``RateLimiter.decide`` with ``Subject(..., door_counted=True)``.
- limits moving window: two ``MovingWindowRateLimiter.hit`` calls (user, IP)
  and a ``GET`` of a block key.
- limits sliding window counter: the same with ``SlidingWindowCounterRateLimiter``.

Reports decisions per second (the median of short interleaved rounds, so that
load from elsewhere on a shared machine falls on every implementation alike) and
p50/p99 latency, single-threaded and with 8 threads, at 200/min (nobody is
denied); the door alone (in-process, microseconds per call); then Redis memory of
the rate-limit keys: subjects x (a user key + an IP key), 3 requests each at
10/min (and 10 each: a full bucket), every key weighed with MEMORY USAGE and
scaled to 100,000 keys; and the ratios. pack391's detector counters (batched per
instance, written about once a second) are not in the key figures;
``usedMemoryDelta`` shows all memory used. The door writes no rate-limit key, so
the front-door case has no memory figure of its own. Ratios: pack391 / peer, and
the door's cost (front-door decision / decision alone) from the same interleaved
run; the cluster's throughput against one Redis's, paired round by round.

Then, on both, what one decision costs Redis per kind of request (``bench.ratelimit_costs``:
slots, keys, commands, Redis CPU and client CPU per decision), the figures of the capacity
model in docs/scaling-out.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import redis
from limits import parse, storage, strategies

from bench import ratelimit_costs
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import Credential, RateLimiter, Subject
from shared.ratelimit.policy import EndpointClass, GeoRule
from shared.redis import client_for_url
from stack.platform import datastores

Decide = Callable[[int], bool]

DEFAULT_JSON = Path(__file__).resolve().parents[1] / ".local" / "bench-ratelimit.json"

LIMIT_KEYS = "pack391:{*}:rl:*"
"""The rate-limit buckets (:mod:`shared.ratelimit.keys`: a user's, an address's)."""


def bundle_client(url: str) -> redis.Redis:
    """A client as the bundle builds it for ``url`` (one Redis or a cluster; decoded
    replies, a pool of 64 per server)."""
    return client_for_url(url, 5000, max_connections=64)


class NoGeo(GeoRules):
    """No country rules, without touching Firestore."""

    def __init__(self) -> None:
        """Nothing to wire: no Firestore client, no cache."""

    def get(self, country: str | None) -> GeoRule | None:
        return None


def ip_of(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def ours(client: redis.Redis, cls: EndpointClass = EndpointClass.GENERAL) -> Decide:
    limiter = RateLimiter(client, NoGeo())

    def decide(i: int) -> bool:
        subject = Subject(f"user-{i}", ClientInfo(ip_of(i), None, "fp"))
        return limiter.decide(cls, subject, datetime.now(UTC)).allowed

    return decide


def ours_front_door(client: redis.Redis, cls: EndpointClass = EndpointClass.GENERAL) -> Decide:
    """Per request, what a deployed callable does: the front door (pre-auth address count,
    blocked-address check), then the decision, which does not count the source again."""
    limiter = RateLimiter(client, NoGeo())

    def decide(i: int) -> bool:
        who = ClientInfo(ip_of(i), None, "fp")
        now = datetime.now(UTC)
        if limiter.door(who, now, Credential.USER).retry_ms:
            return False  # turned away at the door: no decision (shared/edge.py)
        subject = Subject(f"user-{i}", who, door_counted=True)
        return limiter.decide(cls, subject, now).allowed

    return decide


def door_alone(client: redis.Redis, calls: int) -> dict[str, float]:
    """Microseconds per ``RateLimiter.door`` call, single-threaded, on its own limiter
    (counter flushes and block-list re-reads included, as they fall due)."""
    limiter = RateLimiter(client, NoGeo())
    clients = [ClientInfo(ip_of(i), None, "fp") for i in range(10_000)]
    began = time.perf_counter()
    for k in range(calls):
        limiter.door(clients[k % 10_000], datetime.now(UTC), Credential.USER)
    elapsed = time.perf_counter() - began
    return {"calls": calls, "usPerCall": round(elapsed / calls * 1e6, 2)}


def theirs(url: str, strategy: type[strategies.RateLimiter], limit: str = "200/minute") -> Decide:
    store = storage.RedisStorage(url)
    limiter = strategy(store)
    item = parse(limit)
    blocks = redis.Redis.from_url(url)

    def decide(i: int) -> bool:
        ip = ip_of(i)
        blocked = blocks.get(f"block:{ip}") is not None
        user_ok = limiter.hit(item, "general", "u", f"user-{i}")
        ip_ok = limiter.hit(item, "general", "ip", ip)
        return not blocked and user_ok and ip_ok

    return decide


def run_for(decide: Decide, threads: int, seconds: float) -> tuple[float, list[float]]:
    """Decisions per second and every decision's latency over ``seconds`` with ``threads``."""
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        mine = latencies[k]
        while True:
            started = time.perf_counter()
            if started >= stop:
                return
            decide(next(counter) % 100_000)
            mine.append(time.perf_counter() - started)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    merged = [x for part in latencies for x in part]
    return len(merged) / elapsed, merged


def interleaved(
    decides: dict[str, Decide], threads: int, rounds: int, round_sec: float
) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Short rounds of each implementation in turn (rotating the order), so that load
    from elsewhere on a shared machine falls on all of them alike; the median round,
    and every round's rate (for ratios paired round by round)."""
    names = list(decides)
    rates: dict[str, list[float]] = {name: [] for name in names}
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rate, lat = run_for(decides[name], threads, round_sec)
            rates[name].append(rate)
            latencies[name].extend(lat)
    out = {}
    for name in names:
        cuts = statistics.quantiles(latencies[name], n=100)
        out[name] = {
            "decisionsPerSec": round(statistics.median(rates[name]), 1),
            "p50Ms": round(cuts[49] * 1000, 3),
            "p99Ms": round(cuts[98] * 1000, 3),
        }
    return out, rates


def paired(rates: dict[str, list[float]], a: str, b: str) -> float:
    """The median over rounds of ``a``'s rate / ``b``'s rate in the same round: the two ran
    within a couple of seconds of each other, so a load swing between rounds cancels."""
    return round(statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True)), 2)


def memory(
    client: redis.Redis, decide: Decide, subjects: int, hits: int, limit_keys: str
) -> dict[str, float]:
    """Fill ``subjects`` x ``hits`` decisions, then weigh the rate-limit keys
    (``MEMORY USAGE`` of every key matching ``limit_keys``) and everything else."""
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    for i in range(subjects):
        for _ in range(hits):
            decide(i)
    after = int(client.info("memory")["used_memory"])
    limit_bytes = 0
    count = 0
    for key in client.scan_iter(match=limit_keys, count=1000):
        limit_bytes += int(client.memory_usage(key, samples=0) or 0)
        count += 1
    return {
        "limitKeys": count,
        "limitKeyBytes": limit_bytes,
        "bytesPer100kKeys": round(limit_bytes / max(count, 1) * 100_000),
        "usedMemoryDelta": after - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="per implementation and thread count"
    )
    parser.add_argument(
        "--round-sec", type=float, default=0.5, help="length of one interleaved round"
    )
    parser.add_argument(
        "--memory-subjects",
        type=int,
        default=5_000,
        help="subjects filled for the memory figure (each key is weighed, then scaled to 100,000)",
    )
    parser.add_argument(
        "--door-calls", type=int, default=50_000, help="calls timed for the door-alone figure"
    )
    parser.add_argument(
        "--cost-decisions", type=int, default=5_000, help="decisions per cost case and Redis"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"also write the results here (default {DEFAULT_JSON}; bench.capacity reads it)",
    )
    args = parser.parse_args()

    child, url = datastores.start_redis(Path(tempfile.mkdtemp(prefix="bench-redis-")))
    nodes, cluster = datastores.start_redis_cluster(Path(tempfile.mkdtemp(prefix="bench-rc-")))
    try:
        client = redis.Redis.from_url(url)
        os.environ["REDIS_URL"] = url

        def our_client() -> redis.Redis:
            return redis.Redis.from_url(url, decode_responses=True, max_connections=64)

        def cluster_client() -> redis.Redis:
            return bundle_client(cluster)

        # name -> (the decision at 200/min, the same at 10/min for the memory fill (None:
        # no memory figure), its keys)
        impls: dict[str, tuple[Callable[[], Decide], Callable[[], Decide] | None, str]] = {
            "pack391": (
                lambda: ours(our_client()),
                lambda: ours(our_client(), EndpointClass.WALLET),
                LIMIT_KEYS,
            ),
            "pack391_cluster": (lambda: ours(cluster_client()), None, LIMIT_KEYS),
            "pack391_front_door": (lambda: ours_front_door(our_client()), None, LIMIT_KEYS),
            "limits_moving_window": (
                lambda: theirs(url, strategies.MovingWindowRateLimiter),
                lambda: theirs(url, strategies.MovingWindowRateLimiter, "10/minute"),
                "LIMITS*",
            ),
            "limits_sliding_window_counter": (
                lambda: theirs(url, strategies.SlidingWindowCounterRateLimiter),
                lambda: theirs(url, strategies.SlidingWindowCounterRateLimiter, "10/minute"),
                "LIMITS*",
            ),
        }
        decides = {name: make() for name, (make, _, _) in impls.items()}
        rounds = max(3, round(args.seconds / args.round_sec))
        single, single_rounds = interleaved(decides, 1, rounds, args.round_sec)
        eight, eight_rounds = interleaved(decides, 8, rounds, args.round_sec)
        door_only = door_alone(our_client(), args.door_calls)
        print(f"{'door alone':32s} {door_only}", flush=True)
        results: dict[str, dict[str, object]] = {}
        for name, (_, make_slow, limit_keys) in impls.items():
            mem = {
                f"hits{hits}": memory(client, make_slow(), args.memory_subjects, hits, limit_keys)
                for hits in (3, 10)
                if make_slow is not None
            }
            results[name] = {"threads1": single[name], "threads8": eight[name], "memory": mem}
            print(
                f"{name:32s} 1 thread {single[name]}  8 threads {eight[name]}  memory {mem}",
                flush=True,
            )

        def ratio(a: str, b: str, path: tuple[str, ...]) -> float:
            x: object = results[a]
            y: object = results[b]
            for part in path:
                x = x[part]  # type: ignore[index]
                y = y[part]  # type: ignore[index]
            return round(float(x) / float(y), 2)  # type: ignore[arg-type]

        ratios: dict[str, dict[str, float]] = {}
        for peer in ("limits_moving_window", "limits_sliding_window_counter"):
            ratios[peer] = {
                "throughput1x": ratio("pack391", peer, ("threads1", "decisionsPerSec")),
                "throughput8x": ratio("pack391", peer, ("threads8", "decisionsPerSec")),
                "p99_1x": ratio("pack391", peer, ("threads1", "p99Ms")),
                "memoryShare3hits": ratio("pack391", peer, ("memory", "hits3", "bytesPer100kKeys")),
                "memoryShare10hits": ratio(
                    "pack391", peer, ("memory", "hits10", "bytesPer100kKeys")
                ),
                "frontDoorThroughput1x": ratio(
                    "pack391_front_door", peer, ("threads1", "decisionsPerSec")
                ),
                "frontDoorThroughput8x": ratio(
                    "pack391_front_door", peer, ("threads8", "decisionsPerSec")
                ),
                "frontDoorP99_1x": ratio("pack391_front_door", peer, ("threads1", "p99Ms")),
                "p50_1x": ratio("pack391", peer, ("threads1", "p50Ms")),
                "frontDoorP50_1x": ratio("pack391_front_door", peer, ("threads1", "p50Ms")),
                "pairedThroughput1x": paired(single_rounds, "pack391", peer),
                "pairedThroughput8x": paired(eight_rounds, "pack391", peer),
                "pairedFrontDoorThroughput1x": paired(single_rounds, "pack391_front_door", peer),
                "pairedFrontDoorThroughput8x": paired(eight_rounds, "pack391_front_door", peer),
            }
        door_cost = {
            "throughput1x": ratio("pack391_front_door", "pack391", ("threads1", "decisionsPerSec")),
            "throughput8x": ratio("pack391_front_door", "pack391", ("threads8", "decisionsPerSec")),
            "p50_1x": ratio("pack391_front_door", "pack391", ("threads1", "p50Ms")),
            "pairedThroughput1x": paired(single_rounds, "pack391_front_door", "pack391"),
            "pairedThroughput8x": paired(eight_rounds, "pack391_front_door", "pack391"),
            "doorAloneUs": door_only["usPerCall"],
        }
        cluster_vs_single = {
            "throughput1x": ratio("pack391_cluster", "pack391", ("threads1", "decisionsPerSec")),
            "throughput8x": ratio("pack391_cluster", "pack391", ("threads8", "decisionsPerSec")),
            "pairedThroughput1x": paired(single_rounds, "pack391_cluster", "pack391"),
            "pairedThroughput8x": paired(eight_rounds, "pack391_cluster", "pack391"),
            "p50_1x": ratio("pack391_cluster", "pack391", ("threads1", "p50Ms")),
        }
        costs = {
            "single": ratelimit_costs.measure(
                bundle_client(url), [client], args.cost_decisions, "one"
            ),
            "cluster": ratelimit_costs.measure(
                cluster_client(),
                [redis.Redis(port=datastores.node_port(n)) for n in nodes],
                args.cost_decisions,
                "many",
            ),
        }
        print(ratelimit_costs.render(costs["single"], costs["cluster"]))
        print(
            json.dumps(
                {
                    "ratiosVsPeer": ratios,
                    "doorCost": door_cost,
                    "clusterVsSingle": cluster_vs_single,
                },
                indent=2,
            )
        )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "results": results,
                        "doorAlone": door_only,
                        "ratios": ratios,
                        "doorCost": door_cost,
                        "clusterVsSingle": cluster_vs_single,
                        "costPerDecision": costs,
                    },
                    indent=2,
                )
            )
    finally:
        child.stop()
        for node in nodes:
            node.stop()


if __name__ == "__main__":
    main()
