"""Pushed service metrics: the samples services (or sidecars) push, summed per minute in
Redis. The scaling engine's local metrics source and the deploy guard's per-revision
metrics (a revision name as the service id) both read it; the local scaler reads the
resize hooks services register here.

One hash per service and minute: request and error counts (summed), CPU (mean of the
samples), p95 latency (the largest reported: conservative), queue depth (the latest).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import cast

import redis

from shared import thresholds as t
from shared.clock import minute_of
from shared.isolation import PREFIX
from shared.models.scaling import MetricsSnapshot, ReportMetricsRequest, ServiceConfig
from shared.redis import LUA_DIR, lua_script

_RECORD = LUA_DIR / "record_sample.lua"


class PushedMetricsStore:
    """Per-minute buckets of pushed samples, and the resize hooks of local services."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def _bucket(self, service_id: str, minute: datetime) -> str:
        return f"{PREFIX}:m:{service_id}:{int(minute.timestamp())}"

    def _hook_key(self, service_id: str) -> str:
        return f"{PREFIX}:hook:{service_id}"

    def record(self, req: ReportMetricsRequest, now: datetime) -> datetime:
        """Add one sample to the service's bucket of ``now``'s minute; answers the minute."""
        minute = minute_of(now)

        def arg(value: float | int | None) -> str:
            return "" if value is None else repr(value)

        lua_script(_RECORD, self._redis)(
            keys=[self._bucket(req.service_id, minute)],
            args=[
                arg(req.requests),
                arg(req.errors),
                arg(req.cpu_pct),
                arg(req.p95_latency_ms),
                arg(req.queue_depth),
                t.PUSHED_METRICS_RETENTION_SEC,
            ],
        )
        return minute

    def read(self, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
        """The latest complete minute with samples (older ones come back stale)."""
        minute = minute_of(now)
        look_back = math.ceil(t.SCALE_METRICS_MAX_AGE_SEC / t.SCALE_GUARD_INTERVAL_SEC) + 1
        minutes = [minute - timedelta(minutes=k) for k in range(1, look_back + 1)]
        pipe = self._redis.pipeline(transaction=False)
        for m in minutes:
            pipe.hgetall(self._bucket(cfg.service_id, m))
        for m, raw in zip(minutes, pipe.execute(), strict=True):
            if raw:
                return snapshot_of(m, raw)
        return None

    def minute(self, service_id: str, minute: datetime) -> MetricsSnapshot | None:
        """One minute's bucket as it stands (the current minute: the samples so far)."""
        raw = cast(dict[str, str], self._redis.hgetall(self._bucket(service_id, minute_of(minute))))
        return snapshot_of(minute_of(minute), raw) if raw else None

    def register_hook(self, service_id: str, url: str) -> None:
        self._redis.set(self._hook_key(service_id), url)

    def hook_url(self, service_id: str) -> str | None:
        url = self._redis.get(self._hook_key(service_id))
        return str(url) if url else None


def snapshot_of(minute: datetime, raw: dict[str, str]) -> MetricsSnapshot:
    """One minute's bucket as the snapshot the scaling policy reads."""
    requests = int(raw["requests"]) if "requests" in raw else None
    errors = int(raw.get("errors", "0"))
    cpu_n = int(raw.get("cpu_n", "0"))
    return MetricsSnapshot(
        at=minute,
        source="pushed",
        cpu_pct=float(raw["cpu_sum"]) / cpu_n if cpu_n else None,
        p95_latency_ms=float(raw["p95_max"]) if "p95_max" in raw else None,
        error_rate_pct=100.0 * errors / requests if requests else None,
        requests_per_min=float(requests) if requests is not None else None,
        queue_backlog=int(raw["queue"]) if "queue" in raw else None,
    )
