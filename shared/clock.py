"""The clock and the time helpers every area shares.

Only edges read the clock (:func:`utc_now`); everything else takes ``now`` as an
argument. :func:`minute_of` is the UTC minute as a ``datetime``; the per-minute Redis
counters of traffic protection use an epoch-minute *integer* instead
(:func:`shared.ratelimit.keys.minute_of`): a different thing with its own name space.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, milliseconds: how every timestamp goes on the wire."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass timezone-aware UTC times")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def minute_of(moment: datetime) -> datetime:
    """The start of the UTC minute ``moment`` falls in."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def ms(moment: datetime) -> int:
    """Milliseconds since the epoch (how Redis scripts and keys hold instants)."""
    return int(moment.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    """The UTC instant of ``value`` milliseconds since the epoch (inverse of :func:`ms`)."""
    return datetime.fromtimestamp(value / 1000, UTC)


def random_suffix() -> str:
    """Eight random hex digits: the default uniqueness part of :func:`new_id`."""
    return uuid.uuid4().hex[:8]


def new_id(now: datetime, suffix: str | None = None) -> str:
    """A sortable document id: ``now`` (UTC, to the second) and ``suffix`` (random when
    None), e.g. ``20261127120000-1a2b3c4d``. Ids of one second sort by their suffix."""
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}-{suffix if suffix is not None else random_suffix()}"
