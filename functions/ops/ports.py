"""What the ops service needs from the outside, and what it gets back: Protocols and the
small records they exchange; nothing concrete.

- :class:`MetricsSource`: the live counts (Firestore aggregation queries:
  :class:`functions.ops.metrics_source.AggregateMetricsSource`);
- :class:`OpsRecords`: the snapshot, the history, the alert rules' state, and what the
  dashboard reads of other areas (Firestore: :class:`functions.ops.store.OpsRepository`);
- :class:`PanelSource` and :class:`Panels`: the panels fed by other areas
  (:mod:`functions.ops.panels`);
- :class:`Alerts`: every area's alerts (:class:`shared.alerts.store.AlertStore`), and
  :data:`DeliverAlerts`, the sending of their notifications (:func:`shared.alerts.
  notifier.deliver` with the webhook);
- :data:`RedisUp` and :data:`DDoSModeReader`: the health of Redis and DDoS mode (Redis,
  through :mod:`functions.ddos.api`);
- :class:`ConsoleRecords`: what the live console and the timeline read of the other
  areas and of the audit log (Firestore, through the areas' ``api`` modules:
  :class:`functions.ops.console_store.ConsoleRepository`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from functions.ops.policy import RuleOutcome, RuleState
    from shared.alerts.policy import AlertChange
    from shared.audit import Change
    from shared.models.alerts import AlertDoc
    from shared.models.ddos import AllowlistEntryDoc, BlockDoc, DetectionDoc
    from shared.models.deploy import DeploymentHistory
    from shared.models.market import MarketDoc
    from shared.models.ops import (
        ActivityEntry,
        HistoryPointDoc,
        LiveSnapshotDoc,
        OpsLiveSlo,
        Panel,
        SourceMetrics,
    )
    from shared.models.scaling import DecisionDoc, ScalingEventDoc, ServiceDoc


class MetricsSource(Protocol):
    """The counts of the live metrics (everything but the system health)."""

    def counts(self, now: datetime) -> SourceMetrics: ...


class PanelSource(Protocol):
    """A dashboard panel fed by another area."""

    def read(self, now: datetime) -> Panel: ...


@dataclass(frozen=True)
class Panels:
    """Panels fed by areas built on other branches (see :class:`PanelSource`)."""

    deployments: PanelSource
    load_tests: PanelSource
    backups: PanelSource


class OpsRecords(Protocol):
    """What the ops area keeps, and what it reads of the other areas."""

    def write_snapshot(
        self, snapshot: LiveSnapshotDoc, point: HistoryPointDoc, point_id: str
    ) -> None: ...

    def read_snapshot(self) -> LiveSnapshotDoc | None: ...

    def history(
        self, since: datetime, until: datetime, fields: list[str] | None
    ) -> Iterator[tuple[datetime, dict[str, float]]]: ...

    def delete_history_before(self, cutoff: datetime) -> int: ...

    def apply_rule(
        self,
        rule: str,
        decide: Callable[[RuleState], RuleOutcome],
        alert: Callable[[RuleOutcome], AlertChange | None],
        now: datetime,
    ) -> RuleOutcome:
        """In one transaction: the rule's state, ``decide``, its ``alert``, the new state."""
        ...

    def scaling_services(self) -> list[ServiceDoc]: ...

    def recent_detections(self) -> list[DetectionDoc]: ...

    def markets(self) -> list[MarketDoc]: ...


class Alerts(Protocol):
    """Every area's alerts, as the dashboard lists and acknowledges them."""

    def acknowledge(self, alert_id: str, change: Change) -> tuple[AlertDoc | None, bool]: ...

    def open_alerts(self, limit: int) -> list[tuple[str, AlertDoc]]: ...

    def changed_since(self, since: datetime, limit: int) -> list[tuple[str, AlertDoc]]:
        """Alerts opened or resolved at or after ``since`` (at most ``limit`` of each)."""
        ...


class ConsoleRecords(Protocol):
    """What the live console and the timeline read besides the alerts; every read is
    bounded (``limit``, and a window where it has ``since``)."""

    def active_blocks(self, now: datetime, limit: int) -> list[BlockDoc]: ...

    def allowlist(self, limit: int) -> list[AllowlistEntryDoc]: ...

    def activity(self, limit: int) -> list[ActivityEntry]:
        """The newest audit-log entries, newest first."""
        ...

    def activity_version(self, since: datetime) -> str:
        """What names the newest audit entries as a whole (entries are only ever added):
        the newest entry's id and how many were written at or after ``since`` (a late
        commit with an earlier ``at`` changes the count): one document and one
        aggregation read."""
        ...

    def slo(self) -> OpsLiveSlo | None:
        """The error budgets and their actions (one document); None before the SLO
        evaluator's first run."""
        ...

    def activity_since(self, since: datetime, limit: int) -> list[ActivityEntry]: ...

    def detections_since(self, since: datetime, limit: int) -> list[DetectionDoc]: ...

    def blocks_since(self, since: datetime, limit: int) -> list[BlockDoc]: ...

    def deployments_since(self, since: datetime, limit: int) -> list[DeploymentHistory]: ...

    def scale_decisions_since(self, since: datetime, limit: int) -> list[DecisionDoc]: ...

    def isolation_events_since(self, since: datetime, limit: int) -> list[ScalingEventDoc]: ...


DeliverAlerts = Callable[[datetime], int]
"""Send every area's undelivered alert notifications; how many were sent."""

RedisUp = Callable[[], bool]
"""Whether Redis answers (a service of the system-health list)."""

DDoSModeReader = Callable[[], tuple[bool, datetime | None, str | None]]
"""(active, until, reason) of DDoS mode."""
