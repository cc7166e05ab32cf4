"""What one decision sends, per kind of request, on one Redis and on a Redis Cluster: the
slots and keys are the design (one script per hash slot: the user's, the address's, a
capped country's), and ``make bench-ratelimit``'s cost table (bench/ratelimit_costs.py,
the figures docs/scaling-out.md is computed from) measures them the same way on both.
A short run of that table."""

from __future__ import annotations

import redis

from bench import ratelimit_costs
from shared.redis import get_redis
from tests.conftest import RedisBackend

EXPECTED = {
    # case: (slots, keys) per decision
    "swipe, signed in": (2, 4),  # user: bucket + DDoS block; address: bucket + DDoS block
    "general, signed in": (2, 4),
    "auth, signed in (brute-force guarded)": (2, 6),  # + a brute-force block in each slot
    "wallet, signed in (guarded, fails closed)": (2, 6),
    "payment, signed in (fails closed)": (2, 6),
    "general, no user": (1, 2),  # the address's anonymous bucket and its DDoS block
    "general, capped country": (3, 5),  # + the country's cap bucket
    "ops caller (staff)": (1, 1),  # its own bucket only: no address, no block, no mode
}


def servers_of(backend: RedisBackend) -> list[redis.Redis]:
    if backend.mode == "single":
        return [redis.Redis.from_url(backend.url)]
    primaries = backend.client.get_primaries()  # type: ignore[attr-defined]
    return [redis.Redis(host=node.host, port=node.port) for node in primaries]


def test_each_decision_sends_one_script_per_slot(redis_backend: RedisBackend) -> None:
    servers = servers_of(redis_backend)
    costs = ratelimit_costs.measure(get_redis(), servers, 40, redis_backend.mode)
    assert {case: (c["slots"], c["keys"]) for case, c in costs.items()} == EXPECTED
    for case, cost in costs.items():
        # each script runs its own commands on the server (PTTL per block, GET and SET of
        # the bucket, EVALSHA itself) and the counters' flush adds its share
        assert cost["redisCommands"] >= 3 * cost["slots"], (case, cost)
        assert cost["redisCpuUs"] > 0 and cost["clientCpuUs"] > 0, (case, cost)
    if redis_backend.mode == "cluster":
        assert len(servers) == 3
