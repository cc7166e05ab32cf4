"""What the deploy guard depends on: the ports (Protocols) and what they exchange.

Implementations: the deployments in Firestore (:mod:`functions.deploy_guard.store`); what
the gates and the judge read from other collections (:mod:`functions.deploy_guard.readers`);
the traffic splitter, per-revision metrics and the fast judge's chain locally
(:mod:`functions.deploy_guard.local`) or on Google Cloud (:mod:`functions.deploy_guard.gcp`),
chosen in :mod:`functions.deploy_guard.wiring`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shared.models.deploy import (
    DeploymentDoc,
    PlatformContext,
    RevisionWindow,
    TrafficSnapshot,
    ValidationReport,
)
from shared.models.scaling import ServiceDoc
from shared.models.slo import ActionsSnapshot, SloAction

if TYPE_CHECKING:  # the Firestore client behind them
    from shared.alerts.policy import AlertChange
    from shared.audit import Change


class TrafficNotApplied(Exception):
    """The platform answered with a split other than the one asked for."""


class TrafficConflict(Exception):
    """A conditional traffic change was refused: the service changed since it was read."""


@dataclass(frozen=True)
class Observed:
    """A service's revisions as the platform holds them."""

    latest_ready: str | None
    shares: dict[str, int]
    """Revision -> percent actually serving (``traffic_statuses``)."""
    etag: str | None = None
    """The service's version as read: :meth:`TrafficSplitter.apply` given it refuses to
    write over a change made since (optimistic concurrency)."""


class TrafficSplitter(Protocol):
    platform: str

    def observe(self, service: str, region: str) -> Observed: ...

    def apply(
        self, service: str, region: str, split: dict[str, int], etag: str | None = None
    ) -> dict[str, int]:
        """Send ``split`` (revision -> percent); answers what now serves. With ``etag``,
        raises :class:`TrafficConflict` when the service changed since it was read."""


class RevisionMetrics(Protocol):
    def window(
        self,
        service: str,
        region: str,
        revision: str,
        start: datetime,
        end: datetime | None = None,
    ) -> RevisionWindow:
        """Requests, 5xx and p95 of ``revision`` from ``start`` (a minute's start) to
        ``end`` (default: the end of that minute; later: whole minutes, the last one as
        far as it is known)."""


@runtime_checkable
class RevisionPush(Protocol):
    """Revision metrics that take pushed samples (the local stack's); Cloud Monitoring's
    are measured by the platform and take none."""

    def record(
        self, revision: str, requests: int, errors: int, p95_ms: float | None, now: datetime
    ) -> datetime:
        """Add one sample to ``revision``'s current minute; answers the minute."""


class JudgeChain(Protocol):
    """The fast judge's schedule: :meth:`schedule` asks for one run of
    ``DeployGuard.tick(deployment_id)`` at ``at``; asking twice for the same
    (deployment, ``at``) runs it once."""

    def schedule(self, deployment_id: str, at: datetime) -> None: ...


class BusinessEvents(Protocol):
    """Payout anomalies, token mismatches and auth failures per revision and window."""

    def counts(
        self, revision: str | None, start: datetime, end: datetime
    ) -> dict[str, tuple[int, int]]:
        """Rate name -> (bad events, all events); ``revision`` None: every revision."""

    def window(self, revision: str, start: datetime, end: datetime) -> RevisionWindow: ...


class GateEvidence(Protocol):
    """What the pre-deploy gates read besides the business events."""

    def services(self) -> list[ServiceDoc]: ...

    def stuck_payouts(self, older_than: datetime) -> int: ...

    def wallet_mismatches(self, sample: int) -> tuple[int, list[dict[str, int | str]]]:
        """(wallets checked, the ones whose balance is not the sum of their transactions)."""

    def missing_indexes(
        self, project: str, database: str, wanted: list[dict[str, Any]]
    ) -> list[str] | None:
        """Declared indexes not READY in ``database`` (None: the emulator, which needs
        none)."""


class Deployments(Protocol):
    """The deployments, the per-environment active lock, reports and traffic snapshots."""

    def save_report(self, report: ValidationReport, change: Change) -> None: ...

    def latest_report(self, version: str, environment: str) -> ValidationReport | None: ...

    def save_snapshot(self, snapshot: TrafficSnapshot, change: Change) -> None: ...

    def snapshot(self, environment: str) -> TrafficSnapshot | None: ...

    def create(
        self, dep: DeploymentDoc, change: Change, consume_snapshot: bool = False
    ) -> DeploymentDoc | str:
        """Create ``dep``, or the id of the environment's active deployment."""

    def get(self, deployment_id: str) -> DeploymentDoc | None: ...

    def recent(self, environment: str | None, limit: int) -> list[DeploymentDoc]: ...

    def active_ids(self) -> list[str]: ...

    def update(
        self,
        deployment_id: str,
        mutate: Callable[[DeploymentDoc], DeploymentDoc | None],
        change: Change | None,
        alerts: Callable[[DeploymentDoc, DeploymentDoc], list[AlertChange]] = ...,
    ) -> tuple[DeploymentDoc, DeploymentDoc] | None:
        """Read, ``mutate``, write in one transaction; (before, after) or None."""

    def generation(self, deployment_id: str) -> int | None: ...

    def mark_applied(
        self, deployment_id: str, generation: int, percent: int, now: datetime
    ) -> DeploymentDoc | None: ...


class PlatformSignals(Protocol):
    """What the platform did during judged minutes (DDoS mode and detections, scale and
    isolation changes, dependency stalls), read from what the bundle records."""

    def context(self, start: datetime, end: datetime) -> PlatformContext:
        """The platform signals of ``[start, end)``."""


class ErrorBudgets(Protocol):
    """The error budgets' decisions as ``pack391_evaluateSlos`` last recorded them (the
    durable copy: Firestore, :mod:`functions.deploy_guard.budget_gate`), for the error
    budget gate."""

    def actions(self) -> ActionsSnapshot | None:
        """The last recorded actions (None: none recorded)."""

    def count_shadow(self, action: SloAction, now: datetime) -> None:
        """One event a shadowed action would have acted on (best effort)."""


@dataclass(frozen=True)
class DeployPorts:
    store: Deployments
    splitter: TrafficSplitter
    metrics: RevisionMetrics
    business: BusinessEvents
    gates: GateEvidence
    project: str
    region: str
    default_services: tuple[str, ...]
    probe_urls: tuple[str, ...]
    index_file: Path
    chain: JudgeChain | None = None
    """The fast judge's schedule (a Cloud Tasks chain deployed, timers locally); None:
    only the minute monitor judges."""
    platform: PlatformSignals | None = None
    """What the platform did in the judged minutes; None: judged without (no pause for
    the platform)."""
    budgets: ErrorBudgets | None = None
    """The error budgets' recorded actions (the error budget gate); None: not read (the
    gate says no SLO state)."""
