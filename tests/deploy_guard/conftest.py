"""Deploy guard tests read per-revision metrics from Redis several times per step on a
shared machine: the same patient Redis timeout as the scaling tests."""

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
