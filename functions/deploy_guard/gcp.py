"""The deploy guard on Google Cloud.

- :class:`CloudRunTraffic`: Cloud Run Admin API v2 (through :mod:`shared.gcp.cloudrun`),
  ``Service.traffic`` / ``traffic_statuses``.
- :class:`MonitoringRevisionMetrics`: Cloud Monitoring grouped by revision (through
  :mod:`shared.gcp.monitoring`).
- :class:`TaskQueueJudgeChain`: the fast judge's ticks as named Cloud Tasks tasks
  (firebase-admin's task queue).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc

from functions.deploy_guard.ports import Observed, TrafficConflict
from shared import thresholds as t
from shared.gcp import budget
from shared.gcp import monitoring as gm
from shared.gcp.cloudrun import CloudRunServices, serving_shares, short_revision
from shared.models.deploy import RevisionWindow


class CloudRunTraffic:
    """Cloud Run Admin API v2: ``Service.traffic`` with revision targets; reads
    ``traffic_statuses`` back. Only ``traffic`` is in the update mask."""

    platform = "cloud_run"

    def __init__(self, services: CloudRunServices) -> None:
        self._services = services

    def name(self, service: str, region: str) -> str:
        return self._services.name(service, region)

    def observe(self, service: str, region: str) -> Observed:
        found = self._services.get(service, region)
        latest = short_revision(found.latest_ready_revision) or None
        return Observed(latest, serving_shares(found), found.etag or None)

    def apply(
        self, service: str, region: str, split: dict[str, int], etag: str | None = None
    ) -> dict[str, int]:
        """With ``etag``, the update carries ``Service.etag``: Cloud Run refuses it (409
        ``ABORTED``) when the service changed since, which is :class:`TrafficConflict`."""
        try:
            updated = self._services.set_traffic(
                service, region, split, etag, t.DEPLOY_TRAFFIC_TIMEOUT_SEC
            )
        except gexc.Conflict as exc:  # Aborted is a Conflict (HTTP 409)
            if etag is None:
                raise
            raise TrafficConflict(f"{service} changed since etag {etag}: {exc}") from exc
        return serving_shares(updated)


JUDGE_TASK_FUNCTION = "pack391JudgeDeployment"
"""The task-queue function of the fast judge (no underscore: its Cloud Tasks queue is
named after it, and queue ids allow letters, digits and hyphens only)."""


def tick_task_id(deployment_id: str, at: datetime) -> str:
    """One Cloud Tasks name per (deployment, tick): a second enqueue of the same tick is
    refused ``ALREADY_EXISTS``, so overlapping links never fork the chain."""
    return f"judge-{deployment_id}-{int(at.timestamp())}"


ENQUEUE_WAIT_SEC = 10.0
"""The longest one tick's enqueue is waited for, within the call's budget."""


class TaskQueueJudgeChain:
    """Deployed: each tick is a named Cloud Tasks task for ``pack391JudgeDeployment``
    (firebase-admin's task queue; ``TaskOptions.schedule_time`` and ``task_id``, Cloud Tasks
    ``Task.scheduleTime`` / ``Task.name``:
    https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks)."""

    def __init__(self, region: str, app: Any = None) -> None:
        self._region = region
        self._app = app

    def schedule(self, deployment_id: str, at: datetime) -> None:
        from firebase_admin import exceptions as fa_exc
        from firebase_admin import functions as admin_functions

        queue = admin_functions.task_queue(
            f"locations/{self._region}/functions/{JUDGE_TASK_FUNCTION}", app=self._app
        )
        options = admin_functions.TaskOptions(
            schedule_time=at,
            dispatch_deadline_seconds=int(
                t.CANARY_FAST_CHECK_BUDGET_SEC + t.DEPLOY_TRAFFIC_TIMEOUT_SEC + 15
            ),
            task_id=tick_task_id(deployment_id, at),
        )
        # another link scheduled this tick (ALREADY_EXISTS): one chain
        task = {"data": {"deploymentId": deployment_id, "at": at.isoformat()}}
        # firebase-admin takes no timeout (120 s per request, retried): waited for within
        # the call's budget; a late enqueue is the same named task (ALREADY_EXISTS after)
        with contextlib.suppress(fa_exc.AlreadyExistsError):
            budget.bounded(
                budget.CLOUD_TASKS, ENQUEUE_WAIT_SEC, lambda: queue.enqueue(task, options)
            )


_REVISION_COUNTS = gm.Query(
    gm.REQUESTS,
    gm.Aligner.ALIGN_DELTA,
    gm.Reducer.REDUCE_SUM,
    ("resource.labels.revision_name", "metric.labels.response_code_class"),
)
_REVISION_P95 = gm.Query(
    gm.LATENCY,
    gm.Aligner.ALIGN_PERCENTILE_95,
    gm.Reducer.REDUCE_MAX,
    ("resource.labels.revision_name",),
)


class MonitoringRevisionMetrics:
    """Cloud Run's request count (by response class) and p95 latency for one revision and
    minute, from Cloud Monitoring (filtered on the revision, aligned per minute)."""

    def __init__(self, reader: gm.MonitoringReader) -> None:
        self._reader = reader

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
        counts = self._reader.series(
            _REVISION_COUNTS,
            gm.cloud_run_filter(gm.REQUESTS, service, region, revision),
            start,
            end,
            minute,
        )
        for series in counts:
            n = sum(int(sample.value) for sample in series.samples)
            requests += n
            if series.labels.get("response_code_class") == "5xx":
                errors += n
        p95: float | None = None
        latencies = self._reader.series(
            _REVISION_P95,
            gm.cloud_run_filter(gm.LATENCY, service, region, revision),
            start,
            end,
            minute,
        )
        for series in latencies:
            for sample in series.samples:
                p95 = max(p95 or 0.0, sample.value)
        return RevisionWindow(requests=requests, errors=errors, p95_latency_ms=p95)
