"""The ``redis_backend`` fixture (tests/conftest.py) gives one Redis and a real Redis
Cluster: both take what the bundle sends (single-key commands, single-slot transactions
and scripts), and the cluster really is one (a script over two slots is refused)."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from shared import redis as shared_redis
from tests.conftest import RedisBackend

TWO_KEYS = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"


def test_set_and_get(redis_backend: RedisBackend) -> None:
    client = redis_backend.client
    assert client.set("pack391:test:plain", "v") is True
    assert client.get("pack391:test:plain") == "v"
    # the bundle's own client is on the same backend (REDIS_URL is the fixture's)
    bundle = shared_redis.get_redis()
    assert shared_redis.is_cluster(bundle) is (redis_backend.mode == "cluster")
    assert bundle.get("pack391:test:plain") == "v"


def test_a_hash_tagged_transaction(redis_backend: RedisBackend) -> None:
    client = redis_backend.client
    with client.pipeline(transaction=True) as pipe:
        pipe.incr("{pack391:test}:a")
        pipe.incrby("{pack391:test}:b", 5)
        pipe.expire("{pack391:test}:a", 60)
        assert pipe.execute() == [1, 5, True]
    assert client.mget("{pack391:test}:a", "{pack391:test}:b") == ["1", "5"]


def test_a_script_over_two_keys_of_one_slot(redis_backend: RedisBackend) -> None:
    script = redis_backend.client.register_script(TWO_KEYS)
    keys = ["{pack391:test}:set", "{pack391:test}:count"]
    assert script(keys=keys, args=["x"]) == 1
    assert script(keys=keys, args=["y"]) == 2
    assert redis_backend.client.get(keys[0]) == "y"


def test_the_cluster_refuses_a_script_over_two_slots(redis_backend: RedisBackend) -> None:
    if redis_backend.mode != "cluster":
        pytest.skip("one Redis has no slots")
    # the cluster client refuses it itself; the server's own answer, from a plain
    # connection to a node, is what proves the fixture is a cluster
    with pytest.raises(RedisClusterException, match="same key slot"):
        redis_backend.client.eval(TWO_KEYS, 2, "pack391:a", "pack391:b", "x")
    node_url = shared_redis.cluster_url(redis_backend.url)
    assert node_url is not None
    node = redis.Redis.from_url(node_url, socket_timeout=5)
    try:
        with pytest.raises(ClusterCrossSlotError):  # the server's CROSSSLOT error
            node.eval(TWO_KEYS, 2, "pack391:a", "pack391:b", "x")
    finally:
        node.close()
