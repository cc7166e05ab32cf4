"""Dashboard panels fed by other areas (deployments, load tests, backups), the
:class:`functions.ops.ports.PanelSource` port: :class:`RecentDocsPanel` on the area's
collection, :class:`UnavailablePanel` when the area is not in the build."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from google.cloud import firestore

from shared import thresholds
from shared.models.ops import Panel


@dataclass(frozen=True)
class UnavailablePanel:
    """The area that feeds the panel is not in this build."""

    reason: str

    def read(self, now: datetime) -> Panel:
        return Panel(available=False, reason=self.reason)


class RecentDocsPanel:
    """The newest documents of an area's collection, only ``fields`` of them when given."""

    def __init__(
        self,
        db: firestore.Client,
        collection: str,
        order_field: str,
        fields: list[str] | None = None,
    ) -> None:
        self._db, self._collection, self._order = db, collection, order_field
        self._fields = fields

    def read(self, now: datetime) -> Panel:
        query = (
            self._db.collection(self._collection)
            .order_by(self._order, direction=firestore.Query.DESCENDING)
            .limit(thresholds.DASHBOARD_RECENT_ITEMS)
        )
        if self._fields:
            query = query.select(self._fields)
        items = [{"id": s.id, **cast(dict[str, Any], s.to_dict())} for s in query.stream()]
        return Panel(available=True, items=items)
