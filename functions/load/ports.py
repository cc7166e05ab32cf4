"""What the load service needs from the platform: the shard dispatcher (Cloud Tasks
deployed, :mod:`functions.load.gcp`; worker processes locally, :mod:`functions.load.local`)
and the recorded minutes production-shaped runs are built from
(:class:`functions.load.store.SliMinuteReader`)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared.models.slo import SliMinuteDoc


class Dispatcher(Protocol):
    """Starts every shard of a run at ``start_at`` (epoch seconds); returns at once."""

    name: str

    def dispatch(self, run_id: str, shards: int, start_at: float) -> None: ...


class MinuteSource(Protocol):
    """The recorded minutes (``pack391_sli_minutes``) whose ``at`` is in ``[start, end)``."""

    def minutes(self, start: datetime, end: datetime) -> list[SliMinuteDoc]: ...
