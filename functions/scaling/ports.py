"""What the scaling service depends on: the ports (Protocols) and what they exchange.

Implementations: the registry in Firestore (:mod:`functions.scaling.store`); locks and the
isolation flag in Redis (:mod:`functions.scaling.coordination`); the metrics source and
the scaler locally (:mod:`functions.scaling.local`: pushed metrics, the resize-hook
scaler) or on Google Cloud (:mod:`functions.scaling.gcp`: Cloud Monitoring, Cloud Run),
chosen in :mod:`functions.scaling.wiring`.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.models.scaling import (
    DecisionDoc,
    InitScalingResult,
    IsolationState,
    MetricsSnapshot,
    PendingAction,
    PlatformAnswer,
    ReportMetricsRequest,
    ScalingEventDoc,
    ServiceConfig,
    ServiceDoc,
    ServiceState,
)

if TYPE_CHECKING:  # the Firestore client behind them: not loaded by the read side
    from shared.alerts.policy import AlertChange
    from shared.audit import Change


class MetricsSource(Protocol):
    def read(self, cfg: ServiceConfig, now: datetime) -> MetricsSnapshot | None:
        """The most recent complete minute of the service's load, or None."""


class Scaler(Protocol):
    platform: str

    def apply(self, cfg: ServiceConfig, instances: int) -> PlatformAnswer:
        """Set the service's instance count; the answer says whether the platform took it."""

    def observed(self, cfg: ServiceConfig) -> int | None:
        """The instance count the platform holds now (None: unknown)."""


class PushedMetrics(Protocol):
    """The push path: samples services report, and the resize hooks of local services."""

    def record(self, req: ReportMetricsRequest, now: datetime) -> datetime:
        """Add one sample to the service's bucket of ``now``'s minute; answers the minute."""

    def register_hook(self, service_id: str, url: str) -> None: ...


class Registry(Protocol):
    """The registry (config and live state of every service), its decisions and events."""

    def get(self, service_id: str) -> ServiceDoc | None: ...

    def all_services(self) -> list[ServiceDoc]: ...

    def init(
        self,
        defaults: list[ServiceConfig],
        updates: dict[str, dict[str, Any]],
        change: Change,
    ) -> InitScalingResult:
        """Create missing services, apply ``updates`` to existing ones; audited."""

    def begin_action(
        self, service_id: str, expected: PendingAction | None, intent: PendingAction
    ) -> bool:
        """Record ``intent`` if the pending action is still ``expected``."""

    def clear_action(self, service_id: str, intent: PendingAction) -> None:
        """The platform did not take ``intent``: it is no longer in flight."""

    def add_decision(self, decision: DecisionDoc) -> None:
        """A decision that changes no state."""

    def save_run(
        self,
        service_id: str,
        state: ServiceState,
        decision: DecisionDoc,
        event: ScalingEventDoc | None,
        alert: AlertChange | None,
        now: datetime,
        expected: PendingAction | None = None,
    ) -> bool:
        """A guard run's outcome for one service, in one transaction (False: superseded)."""

    def save_manual(
        self,
        before: ServiceDoc,
        state: ServiceState,
        decision: DecisionDoc,
        change: Change,
        expected: PendingAction | None = None,
    ) -> bool:
        """A manual scale's outcome and its audit entry (False: superseded)."""


@dataclass(frozen=True)
class Lease:
    """A held lock: its token, its fencing number (grows with every acquisition of the
    lock, so a later holder always has a larger one), and ``lost``, set when a renewal
    found the lock gone (the process stalled past the TTL: another holder may act)."""

    token: str
    fence: int
    lost: threading.Event = field(default_factory=threading.Event)


class Lock(Protocol):
    def held(self, ttl_sec: float, wait_sec: float = 0.0) -> AbstractContextManager[Lease | None]:
        """The lock for the block (None: another holder has it), kept renewed, released at
        the end."""


class Locks(Protocol):
    def lock(self, name: str) -> Lock:
        """The lock named ``name`` (``guard``: the run; ``service:<id>``: one service)."""


class IsolationFlags(Protocol):
    def set(self, service_id: str, state: IsolationState) -> None:
        """Write (or clear) the flag every caller of the service checks."""


@dataclass(frozen=True)
class ScalingPorts:
    registry: Registry
    metrics: MetricsSource
    pushed: PushedMetrics
    scaler: Scaler
    locks: Locks
    isolation: IsolationFlags
    dry_run: bool = False
    allow_hooks: bool = False
    """Resize hooks are a local-stack feature: refused when deployed."""
