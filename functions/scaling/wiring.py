"""What the scaling edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

from functions.scaling.coordination import RedisIsolationFlags, RedisLocks
from functions.scaling.gcp import CloudMonitoringSource, CloudRunScaler
from functions.scaling.local import LocalScaler, PushedMetricsStore
from functions.scaling.ports import MetricsSource, Scaler, ScalingPorts
from functions.scaling.service import ScalingService
from functions.scaling.store import ServiceRegistry
from shared import thresholds as t
from shared.config import (
    SCALING_BACKEND,
    SCALING_DRY_RUN,
    project_id,
)
from shared.firestore import get_db
from shared.gcp.cloudrun import CloudRunServices, services_client
from shared.gcp.monitoring import MonitoringReader, metric_client
from shared.redis import get_redis
from shared.wiring import backend_choice, wired


@wired()
def _service_for(backend: str, dry_run: bool, project: str) -> ScalingService:
    client = get_redis()
    pushed = PushedMetricsStore(client)
    metrics: MetricsSource
    scaler: Scaler
    if backend == "gcp":
        reader = MonitoringReader(metric_client(), project, t.MONITORING_READ_TIMEOUT_SEC)
        metrics = CloudMonitoringSource(reader)
        scaler = CloudRunScaler(CloudRunServices(services_client(), project))
    else:
        metrics, scaler = pushed, LocalScaler(client, pushed)
    ports = ScalingPorts(
        registry=ServiceRegistry(get_db()),
        metrics=metrics,
        pushed=pushed,
        scaler=scaler,
        locks=RedisLocks(client),
        isolation=RedisIsolationFlags(client),
        dry_run=dry_run,
        allow_hooks=backend == "local",
    )
    return ScalingService(ports)


def scaling_service() -> ScalingService:
    """The service wired to the configured Firestore, Redis and scaling backend."""
    backend = backend_choice("PACK391_SCALING_BACKEND", SCALING_BACKEND.value)
    return _service_for(backend, SCALING_DRY_RUN.value, project_id())
