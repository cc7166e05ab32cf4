"""Scaling tests run several Redis round trips per guard run on a shared 2-core machine:
give them a Redis timeout that a busy neighbour cannot trip (the 50 ms production
default is about detecting a dead Redis, which these tests do not measure)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import redis as shared_redis


@pytest.fixture(autouse=True)
def patient_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PACK391_REDIS_TIMEOUT_MS", "2000")
    shared_redis.reset_clients()
    yield
    monkeypatch.undo()
    shared_redis.reset_clients()
