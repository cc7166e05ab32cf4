"""What the load service needs from the platform: the shard dispatcher (Cloud Tasks
deployed, :mod:`functions.load.gcp`; worker processes locally, :mod:`functions.load.local`)."""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    """Starts every shard of a run at ``start_at`` (epoch seconds); returns at once."""

    name: str

    def dispatch(self, run_id: str, shards: int, start_at: float) -> None: ...
