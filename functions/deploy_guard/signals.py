"""What the platform was doing during judged minutes, read from what the bundle already
records (the :class:`~functions.deploy_guard.ports.PlatformSignals` port), the same in
production and on the local stack (Firestore and Redis in both):

- DDoS mode (Redis, :func:`functions.ddos.api.ddos_mode`) and the DDoS detections of the
  minutes (``pack391_ddos_detections``, :func:`functions.ddos.api.detections_since`);
- the scale-ups and scale-downs decided (``pack391_scaling_decisions``,
  :func:`functions.scaling.api.scale_decisions_since`) and the isolation changes
  (``pack391_scaling_events``, :func:`functions.scaling.api.isolation_events_since`);
- the calls a dependency did not answer within their budget, counted per minute by the
  edge (:func:`shared.edge_budget.stalls_of`).

Each is a bounded read; what they mean is decided by
:func:`functions.deploy_guard.policy.platform.platform_context`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
from google.cloud import firestore

from functions.ddos.api import ddos_mode, detections_since
from functions.deploy_guard.policy.platform import judged_minutes, platform_context
from functions.scaling.api import isolation_events_since, scale_decisions_since
from shared import thresholds as t
from shared.edge_budget import stalls_of
from shared.firestore import step
from shared.models.deploy import PlatformContext

READ_LIMIT = 50
"""Most records of each kind read for one window (a window is a minute or two: more would
be a platform in such trouble that any 50 of them explain it)."""


class PlatformReader:
    def __init__(self, db: firestore.Client, client: redis.Redis) -> None:
        self._db = db
        self._redis = client

    def context(self, start: datetime, end: datetime) -> PlatformContext:
        settled_since = start - timedelta(seconds=t.CANARY_PLATFORM_SETTLE_SEC)
        mode = ddos_mode(self._redis)
        with step("the platform's records"):
            detections = detections_since(self._db, start - timedelta(minutes=1), READ_LIMIT)
            scales = scale_decisions_since(self._db, settled_since, READ_LIMIT)
            isolations = isolation_events_since(self._db, settled_since, READ_LIMIT)
        return platform_context(
            start,
            end,
            ddos_mode=(
                (datetime.fromtimestamp(mode.until_ms / 1000, UTC), mode.reason) if mode else None
            ),
            detections=detections,
            scale_decisions=scales,
            isolation_events=isolations,
            stalls=stalls_of(self._redis, judged_minutes(start, end)),
        )
