"""The clock. Only edges read it; decisions take ``now`` as an argument."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, milliseconds: how every timestamp goes on the wire."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass timezone-aware UTC times")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
