"""The scaling area's local stand-ins: pushed metrics and the resize-hook scaler.

- :class:`PushedMetricsStore`: the samples services (or sidecars) push, summed per minute
  in Redis. The scaling engine's local metrics source and the deploy guard's per-revision
  metrics (a revision name as the service id, through :mod:`functions.scaling.api`) both
  read it; the push path (``pack391_reportServiceMetrics``) writes it in both modes. One
  hash per service and minute: request and error counts (summed), CPU (mean of the
  samples), p95 latency (the largest reported: conservative), queue depth (the latest).
- :class:`LocalScaler`: records the desired count in Redis and calls the resize hook a
  local service registered here.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import redis

from functions.scaling.coordination import PREFIX
from shared import thresholds as t
from shared.clock import minute_of
from shared.models.scaling import (
    MetricsSnapshot,
    PlatformAnswer,
    ReportMetricsRequest,
    ServiceConfig,
)
from shared.redis import lua_script

_RECORD = Path(__file__).with_name("lua") / "record_sample.lua"


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


class LocalScaler:
    """The local stack's scaler: records the desired count in Redis and POSTs
    ``{"serviceId", "instances"}`` to the resize hook the service registered."""

    platform = "local"

    def __init__(self, client: redis.Redis, store: PushedMetricsStore) -> None:
        self._redis = client
        self._store = store

    def _key(self, service_id: str) -> str:
        return f"{PREFIX}:desired:{service_id}"

    def observed(self, cfg: ServiceConfig) -> int | None:
        raw = self._redis.hget(self._key(cfg.service_id), "instances")
        return int(raw) if raw is not None else None

    def apply(self, cfg: ServiceConfig, instances: int) -> PlatformAnswer:
        """Call the hook (if one is registered); record the count only once it is taken."""
        url = self._store.hook_url(cfg.service_id)
        detail: dict[str, Any] = {"hook": url}
        if url is not None:
            detail.update(_post_json(url, {"serviceId": cfg.service_id, "instances": instances}))
        ok = url is None or 200 <= int(detail.get("status") or 0) < 300
        if ok:
            self._redis.hset(
                self._key(cfg.service_id),
                mapping={"instances": instances, "at": datetime.now(UTC).isoformat()},
            )
        return PlatformAnswer(platform=self.platform, ok=ok, instances=instances, detail=detail)


def _post_json(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST ``payload``; ``{"status": code}`` or ``{"error": why}``."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=t.RESIZE_HOOK_TIMEOUT_SEC) as response:
            return {"status": int(response.status)}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code}
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return {"error": str(exc)}
