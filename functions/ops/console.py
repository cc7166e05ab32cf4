"""The live console: what the ops page polls every few seconds (``pack391_getOpsLive``:
open alerts, DDoS state, deployments, services, recent audited actions, with an etag),
and its timeline (``pack391_getOpsTimeline``). Reads through the ports
(:mod:`functions.ops.ports`); the decisions are pure (:mod:`functions.ops.policy`,
:mod:`functions.ops.timeline`).

Both are reads for people, polled, that no decision reads: while Firestore stalls each
answers the instance's last-known copy of its Firestore part, marked ``stale``
(:mod:`shared.stale`; docs/reliability.md), within a short wait; DDoS mode (Redis) is
read now for the live console.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from functions.ops.policy import block_views, content_etag, deployment_rows
from functions.ops.ports import Alerts, ConsoleRecords, DDoSModeReader, OpsRecords, PanelSource
from functions.ops.service import alert_views, service_views
from functions.ops.timeline import DDoSModeNow, TimelineRecords, build_timeline
from shared import thresholds
from shared.models.ddos import AllowlistEntryDoc, BlockDoc
from shared.models.ops import (
    ActivityEntry,
    AlertView,
    AllowlistView,
    OpsLiveDDoS,
    OpsLiveSlo,
    OpsLiveView,
    OpsTimelineView,
    ServiceView,
)
from shared.stale import LastKnown

LIVE_KEY = "live"
"""The one key of the live console's last-known copy (its reads take no argument)."""

LIVE_PARTS = {"alerts", "ddos", "deployments", "services", "activity", "slo"}
"""The parts of :class:`OpsLiveView` the etag covers (what the page shows)."""


@dataclass(frozen=True)
class LiveReads:
    """What the live console reads of Firestore: the part kept as its last-known copy."""

    alerts: list[AlertView]
    blocks: list[BlockDoc]
    allowlist: list[AllowlistEntryDoc]
    deployments: list[dict[str, Any]]
    services: list[ServiceView]
    slo: OpsLiveSlo | None
    newest_activity: str
    """The activity's version (:meth:`ConsoleRecords.activity_version`): the etag's
    stand-in for its 25 entries."""


class ConsoleService:
    def __init__(
        self,
        alerts: Alerts,
        repo: OpsRecords,
        records: ConsoleRecords,
        deployments: PanelSource,
        ddos_mode: DDoSModeReader,
    ) -> None:
        """``deployments``: the dashboard's deployments panel (its rows, the first few)."""
        self._alerts, self._repo, self._records = alerts, repo, records
        self._deployments, self._ddos_mode = deployments, ddos_mode
        self._live_copy: LastKnown[str, LiveReads] = LastKnown("ops live console")
        self._activity_copy: LastKnown[str, list[ActivityEntry]] = LastKnown("ops activity")
        self._activity_memo: tuple[str, list[ActivityEntry]] | None = None
        self._memo_lock = threading.Lock()
        self._timeline_copy: LastKnown[int, OpsTimelineView] = LastKnown("ops timeline")

    # ------------------------------------------------------------------ live

    def live(self, etag: str | None, now: datetime, stale_max_sec: float = 0.0) -> OpsLiveView:
        """The console's parts and their etag; ``etag`` still current: ``notModified``
        and no parts.

        The etag covers the activity by its version (the newest audit entry's id and the
        recent entries' count: entries are only added), so a poll while nothing changed
        reads one audit document and one count, not 25 entries: they are read only for an
        answer that carries them."""
        active, until, reason = self._ddos_mode()
        answer = self._live_copy.read(LIVE_KEY, lambda: self._live_reads(now), stale_max_sec)
        reads = answer.value
        view = OpsLiveView(
            etag="",
            not_modified=False,
            generated_at=now,
            alerts=reads.alerts,
            ddos=OpsLiveDDoS(
                mode_active=active,
                mode_until=until,
                mode_reason=reason,
                blocks=block_views(reads.blocks, now),
                allowlist=[AllowlistView.model_validate(a.model_dump()) for a in reads.allowlist],
            ),
            deployments=reads.deployments,
            services=reads.services,
            activity=None,
            slo=reads.slo,
            **answer.marks(),
        )
        parts = view.model_dump(mode="json", by_alias=True, include=LIVE_PARTS - {"activity"})
        current = content_etag({**parts, "activityNewest": reads.newest_activity})
        if etag == current:
            return OpsLiveView(
                etag=current,
                not_modified=True,
                generated_at=now,
                alerts=None,
                ddos=None,
                deployments=None,
                services=None,
                activity=None,
                **answer.marks(),
            )
        return view.model_copy(
            update={
                "etag": current,
                "activity": self._activity(reads.newest_activity, stale_max_sec),
            }
        )

    def _activity(self, version: str, stale_max_sec: float) -> list[ActivityEntry]:
        """The newest audit entries at ``version``: this instance's memo of them (exact:
        entries are never changed), else read (stale-capable)."""
        with self._memo_lock:
            memo = self._activity_memo
        if memo is not None and memo[0] == version:
            return memo[1]
        entries = self._activity_copy.read(
            version,
            lambda: self._records.activity(thresholds.LIVE_ACTIVITY_ITEMS),
            stale_max_sec,
        ).value
        with self._memo_lock:
            self._activity_memo = (version, entries)
        return entries

    def _live_reads(self, now: datetime) -> LiveReads:
        panel = self._deployments.read(now)
        return LiveReads(
            alerts=alert_views(self._alerts),
            blocks=self._records.active_blocks(now, thresholds.LIVE_BLOCKS_ITEMS),
            allowlist=self._records.allowlist(thresholds.LIVE_ALLOWLIST_ITEMS),
            deployments=deployment_rows(
                panel.items if panel.available else [], thresholds.LIVE_DEPLOYMENTS_ITEMS
            ),
            services=service_views(self._repo),
            slo=self._records.slo(),
            newest_activity=self._records.activity_version(
                now - timedelta(minutes=thresholds.LIVE_ACTIVITY_VERSION_WINDOW_MIN)
            ),
        )

    # -------------------------------------------------------------- timeline

    def timeline(self, minutes: int, now: datetime, stale_max_sec: float = 0.0) -> OpsTimelineView:
        """The last ``minutes`` on one axis, every lane (:mod:`functions.ops.timeline`)."""
        answer = self._timeline_copy.read(
            minutes, lambda: self._read_timeline(minutes, now), stale_max_sec
        )
        return answer.value.model_copy(update=answer.marks())

    def _read_timeline(self, minutes: int, now: datetime) -> OpsTimelineView:
        since = now - timedelta(minutes=minutes)
        n = thresholds.TIMELINE_SOURCE_ITEMS
        active, until, reason = self._ddos_mode()
        records = TimelineRecords(
            alerts=self._alerts.changed_since(since, n),
            detections=self._records.detections_since(since, n),
            blocks=self._records.blocks_since(since, n),
            ddos_mode=DDoSModeNow(until, reason or "") if active and until else None,
            deployments=self._records.deployments_since(since, n),
            decisions=self._records.scale_decisions_since(since, n),
            isolation=self._records.isolation_events_since(since, n),
            audit=self._records.activity_since(since, n),
        )
        return OpsTimelineView.model_validate(
            {"from": since, "to": now, "events": build_timeline(records, since, now)}
        )
