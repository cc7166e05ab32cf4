"""The scaling area on Google Cloud: the Cloud Run scaler and the Cloud Monitoring source.

- :class:`CloudRunScaler`: Cloud Run Admin API v2 (through :mod:`shared.gcp.cloudrun`),
  service-level manual scaling.
- :class:`CloudMonitoringSource`: Cloud Run's built-in metrics and a Cloud Tasks queue's
  depth (through :mod:`shared.gcp.monitoring`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from google.api_core import exceptions as gexc

from shared import thresholds as t
from shared.gcp import monitoring as gm
from shared.gcp.cloudrun import CloudRunServices, manual_instances
from shared.models.scaling import MetricsSnapshot, PlatformAnswer, ServiceConfig

KEEP_EXTERNAL_SCALING: dict[str, Any] = {"preserve_external_changes": True}
"""Decorator options for a Firebase function this engine scales (``@https_fn.on_request(
**KEEP_EXTERNAL_SCALING)``): without them ``firebase deploy`` writes the unset
min/max-instance options as resets and undoes the engine's scaling."""


class CloudRunScaler:
    """Cloud Run Admin API v2: service-level manual scaling.

    Sets ``Service.scaling`` to ``MANUAL`` with ``manual_instance_count`` (the update mask
    names only those fields, so nothing else of the service changes) and waits for the
    operation. A ``firebase deploy`` of a function that does not set
    ``preserve_external_changes=True`` resets scaling: :meth:`observed` reads what Cloud
    Run holds so the guard notices and re-applies (see the README).
    """

    platform = "cloud_run"

    def __init__(
        self,
        services: CloudRunServices,
        *,
        operation_timeout_sec: float = t.SCALE_OPERATION_TIMEOUT_SEC,
        read_timeout_sec: float = t.CLOUD_RUN_READ_TIMEOUT_SEC,
    ) -> None:
        self._services = services
        self.operation_timeout_sec = operation_timeout_sec
        """Deadline of one update, request to operation done (see the budget)."""
        self._read_timeout_sec = read_timeout_sec

    def name(self, cfg: ServiceConfig) -> str:
        return self._services.name(cfg.cloud_run_service, cfg.region)

    def observed(self, cfg: ServiceConfig) -> int | None:
        service = self._services.get(cfg.cloud_run_service, cfg.region, self._read_timeout_sec)
        return manual_instances(service)

    def apply(self, cfg: ServiceConfig, instances: int) -> PlatformAnswer:
        try:
            service, operation = self._services.set_manual_instances(
                cfg.cloud_run_service, cfg.region, instances, self.operation_timeout_sec
            )
        except (gexc.GoogleAPIError, TimeoutError) as exc:
            return PlatformAnswer(
                platform=self.platform,
                ok=False,
                instances=instances,
                detail={"service": self.name(cfg), "error": f"{type(exc).__name__}: {exc}"},
            )
        held = int(service.scaling.manual_instance_count)
        return PlatformAnswer(
            platform=self.platform,
            ok=held == instances,
            instances=held,
            detail={
                "service": self.name(cfg),
                "operation": operation,
                "generation": int(service.generation),
            },
        )


class CloudMonitoringSource:
    """Cloud Run's built-in metrics (and a Cloud Tasks queue's depth for workers),
    aligned per minute: CPU utilisation (mean), p95 request latency (worst revision),
    request count by response class (5xx share is the error rate)."""

    QUERIES: ClassVar[dict[str, gm.Query]] = {
        "cpu": gm.Query(gm.CPU, gm.Aligner.ALIGN_MEAN, gm.Reducer.REDUCE_MEAN),
        "latency": gm.Query(gm.LATENCY, gm.Aligner.ALIGN_PERCENTILE_95, gm.Reducer.REDUCE_MAX),
        "requests": gm.Query(
            gm.REQUESTS,
            gm.Aligner.ALIGN_DELTA,
            gm.Reducer.REDUCE_SUM,
            ("metric.labels.response_code_class",),
        ),
        "queue": gm.Query(gm.QUEUE_DEPTH, gm.Aligner.ALIGN_MAX, gm.Reducer.REDUCE_SUM),
    }

    def __init__(self, reader: gm.MonitoringReader) -> None:
        self._reader = reader

    def _filter(self, cfg: ServiceConfig, metric: str) -> str:
        if metric == gm.QUEUE_DEPTH:
            return gm.cloud_tasks_filter(metric, cfg.queue_source or "")
        return gm.cloud_run_filter(metric, cfg.cloud_run_service, cfg.region)

    def read(self, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
        start = now - timedelta(seconds=t.SCALE_METRICS_MAX_AGE_SEC + t.SCALE_GUARD_INTERVAL_SEC)
        period = timedelta(seconds=t.SCALE_GUARD_INTERVAL_SEC)
        latest: dict[str, tuple[datetime, float]] = {}
        for key, query in self.QUERIES.items():
            if key == "queue" and not cfg.is_worker:
                continue
            found = self._reader.series(query, self._filter(cfg, query.metric), start, now, period)
            for series in found:
                if not series.samples:
                    continue
                newest = series.samples[0]
                label = series.labels.get("response_code_class", "")
                name = f"{key}:{label}" if key == "requests" else key
                latest[name] = (newest.end, newest.value)
        if not latest:
            return None
        newest_end = max(end for end, _ in latest.values())

        def value(name: str) -> float | None:
            found = latest.get(name)
            return found[1] if found else None

        request_counts = {k: v for k, (_, v) in latest.items() if k.startswith("requests:")}
        total = sum(request_counts.values()) if request_counts else None
        errors = request_counts.get("requests:5xx", 0.0)
        cpu = value("cpu")
        queue = value("queue")
        return MetricsSnapshot(
            at=newest_end - timedelta(seconds=t.SCALE_GUARD_INTERVAL_SEC),
            source="cloud_monitoring",
            cpu_pct=None if cpu is None else 100.0 * cpu,
            p95_latency_ms=value("latency"),
            error_rate_pct=(100.0 * errors / total) if total else None,
            requests_per_min=total,
            queue_backlog=None if queue is None else int(queue),
        )
