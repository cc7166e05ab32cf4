"""The deploy guard's local stand-ins (the local stack's platform).

- :class:`LocalTraffic`: revisions and the split per service in Redis, honoured by the
  local sandbox (``stack/revisions.py``).
- :class:`PushedRevisionMetrics`: per-revision metrics pushed to the scaling area's store
  (:class:`functions.scaling.api.PushedMetricsStore`, the revision name as the service id).
- :class:`LocalJudgeChain`: the fast judge's ticks as timers in this process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import redis

from functions.deploy_guard.ports import Observed, TrafficConflict
from functions.scaling.api import PREFIX, PushedMetricsStore
from shared import thresholds as t
from shared.models.deploy import RevisionWindow
from shared.models.scaling import ReportMetricsRequest
from shared.redis import lua_script

_SET_SPLIT = Path(__file__).with_name("lua") / "set_split.lua"

log = logging.getLogger("pack391.deploy")


class LocalTraffic:
    """The local platform: revisions and the split per service in Redis.

    :meth:`deploy` is what a deploy does locally, with the real platform's traffic rules
    (the Cloud Run and Cloud Functions fakes in ``tests/fakes`` cite them): by default the
    way ``firebase deploy`` lands a function (all traffic on the new revision, whatever
    split was pinned); ``all_traffic=False`` the way ``gcloud run deploy --no-traffic``
    lands a Cloud Run service's revision (the split stays as it was).
    """

    platform = "local"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def _key(self, service: str) -> str:
        return f"{PREFIX}:deploy:svc:{service}"

    def deploy(self, service: str, revision: str, all_traffic: bool = True) -> None:
        key = self._key(service)
        mapping: dict[str | bytes, str] = {"latest": revision}
        if all_traffic or not self._redis.hget(key, "split"):
            # the Cloud Functions API's allTrafficOnLatestRevision (true unless the deploy
            # says otherwise), or a first revision: 100 % on it, the pin is gone
            mapping["split"] = json.dumps({revision: 100})
            mapping["pinned"] = "0"
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=cast(Any, mapping))
        pipe.hincrby(key, "version", 1)
        pipe.execute()

    def observe(self, service: str, region: str) -> Observed:
        raw = cast(dict[str, str], self._redis.hgetall(self._key(service)))
        shares = {k: int(v) for k, v in json.loads(raw.get("split", "{}")).items()}
        return Observed(raw.get("latest"), shares, raw.get("version", "0"))

    def apply(
        self, service: str, region: str, split: dict[str, int], etag: str | None = None
    ) -> dict[str, int]:
        version = lua_script(_SET_SPLIT, self._redis)(
            keys=[self._key(service)], args=[json.dumps(split, sort_keys=True), etag or ""]
        )
        if int(version) < 0:
            raise TrafficConflict(f"{service} changed since version {etag} was read")
        return dict(split)


class PushedRevisionMetrics:
    """The scaling push path (``pack391_reportServiceMetrics``) with the revision name as
    ``serviceId``: only the judged minute counts (an older minute is no data)."""

    def __init__(self, store: PushedMetricsStore) -> None:
        self._store = store

    def record(
        self, revision: str, requests: int, errors: int, p95_ms: float | None, now: datetime
    ) -> datetime:
        """Add one sample to ``revision``'s current minute; answers the minute."""
        sample = ReportMetricsRequest.model_validate(
            {"serviceId": revision, "requests": requests, "errors": errors, "p95LatencyMs": p95_ms}
        )
        return self._store.record(sample, now)

    def window(
        self,
        service: str,
        region: str,
        revision: str,
        start: datetime,
        end: datetime | None = None,
    ) -> RevisionWindow:
        minute = timedelta(seconds=t.CANARY_CHECK_INTERVAL_SEC)
        end = end or start + minute
        requests = errors = 0
        p95: float | None = None
        at = start
        while at < end:
            snap = self._store.minute(revision, at)
            at += minute
            if snap is None or not snap.requests_per_min:
                continue
            n = int(snap.requests_per_min)
            requests += n
            errors += round((snap.error_rate_pct or 0.0) * n / 100)
            if snap.p95_latency_ms is not None:
                p95 = max(p95 or 0.0, snap.p95_latency_ms)
        return RevisionWindow(requests=requests, errors=errors, p95_latency_ms=p95)


class LocalJudgeChain:
    """The local stack: a timer per tick in this process, calling ``run(deployment_id,
    at)`` at ``at`` (the body of ``pack391JudgeDeployment``); one timer per tick."""

    def __init__(self, run: Callable[[str, datetime], object]) -> None:
        self._run = run
        self._pending: set[tuple[str, datetime]] = set()
        self._lock = threading.Lock()

    def schedule(self, deployment_id: str, at: datetime) -> None:
        key = (deployment_id, at)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        delay = max(0.0, (at - datetime.now(at.tzinfo)).total_seconds())
        timer = threading.Timer(delay, self._fire, (deployment_id, at))
        timer.daemon = True
        timer.start()

    def _fire(self, deployment_id: str, at: datetime) -> None:
        with self._lock:
            self._pending.discard((deployment_id, at))
        try:
            self._run(deployment_id, at)
        except Exception:  # a timer thread has no caller: the next minute's monitor judges
            log.exception("fast judge of deployment %s at %s failed", deployment_id, at)
