"""What the deploy_guard edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

from pathlib import Path

from google.cloud.firestore_admin_v1 import FirestoreAdminClient

from functions.deploy_guard.budget_gate import FirestoreErrorBudgets
from functions.deploy_guard.gcp import (
    CloudRunTraffic,
    MonitoringRevisionMetrics,
    TaskQueueJudgeChain,
)
from functions.deploy_guard.local import LocalJudgeChain, LocalTraffic, PushedRevisionMetrics
from functions.deploy_guard.ports import DeployPorts, JudgeChain, RevisionMetrics, TrafficSplitter
from functions.deploy_guard.readers import BusinessMetrics, GateReader
from functions.deploy_guard.service import DeployGuard
from functions.deploy_guard.signals import PlatformReader
from functions.deploy_guard.store import DeployStore
from functions.scaling.api import PushedMetricsStore
from shared.config import (
    CANARY_FAST_JUDGE,
    DEPLOY_BACKEND,
    DEPLOY_PROBE_URLS,
    DEPLOY_SERVICES,
    FUNCTIONS_REGION,
    project_id,
)
from shared.firestore import get_db
from shared.gcp.cloudrun import CloudRunServices, services_client
from shared.gcp.monitoring import MonitoringReader, metric_client
from shared.redis import get_redis
from shared.wiring import backend_choice, wired

INDEX_FILE = Path(__file__).resolve().parents[2] / "firestore.indexes.json"


@wired()
def _guard_for(
    backend: str,
    project: str,
    region: str,
    services: tuple[str, ...],
    urls: tuple[str, ...],
    fast_judge: bool,
) -> DeployGuard:
    db = get_db()
    splitter: TrafficSplitter
    metrics: RevisionMetrics
    chain: JudgeChain | None = None
    indexes: FirestoreAdminClient | None = None
    if backend == "gcp":
        splitter = CloudRunTraffic(CloudRunServices(services_client(), project))
        metrics = MonitoringRevisionMetrics(MonitoringReader(metric_client(), project))
        indexes = FirestoreAdminClient()
        chain = TaskQueueJudgeChain(region) if fast_judge else None
    else:
        splitter = LocalTraffic(get_redis())
        metrics = PushedRevisionMetrics(PushedMetricsStore(get_redis()))
        chain = LocalJudgeChain(lambda d, at: deploy_guard().tick(d, at)) if fast_judge else None
    ports = DeployPorts(
        store=DeployStore(db),
        splitter=splitter,
        metrics=metrics,
        business=BusinessMetrics(db),
        gates=GateReader(db, indexes),
        project=project,
        region=region,
        default_services=services,
        probe_urls=urls,
        index_file=INDEX_FILE,
        chain=chain,
        platform=PlatformReader(db, get_redis()),
        budgets=FirestoreErrorBudgets(db, get_redis()),
    )
    return DeployGuard(ports)


def deploy_guard() -> DeployGuard:
    """The guard wired to the configured backends."""
    return _guard_for(
        backend_choice("PACK391_DEPLOY_BACKEND", DEPLOY_BACKEND.value),
        project_id(),
        FUNCTIONS_REGION.value,
        tuple(DEPLOY_SERVICES.value),
        tuple(DEPLOY_PROBE_URLS.value),
        CANARY_FAST_JUDGE.value,
    )
