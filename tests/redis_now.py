"""A client on the Redis the code under test uses right now: ``REDIS_URL``, which the
``redis_backend`` fixture (tests/conftest.py) points at a Redis Cluster for the ``cluster``
run of a test, and at the session's redis-server otherwise."""

from __future__ import annotations

import functools
import os

import redis
from redis.cluster import RedisCluster

from shared.redis import cluster_url


def redis_now(decode_responses: bool = False) -> redis.Redis:
    """A client on ``REDIS_URL`` (the cluster client for a ``redis+cluster://`` URL)."""
    return _client(os.environ["REDIS_URL"], decode_responses)


@functools.cache
def _client(url: str, decode_responses: bool) -> redis.Redis:
    plain = cluster_url(url)
    if plain is not None:
        cluster = RedisCluster.from_url(plain, decode_responses=decode_responses)
        return cluster  # type: ignore[return-value]
    return redis.Redis.from_url(url, decode_responses=decode_responses)
