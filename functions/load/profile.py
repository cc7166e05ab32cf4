"""A recorded rate profile: what a production-shaped run (``pack391 loadtest
--from-metrics``) plays, minute by minute. Pure data and functions, no I/O.

A profile is a list of minutes, each with the exact number of requests to start per
endpoint in that minute (built from the recorded per-minute counts by
:mod:`functions.load.recorded`). A minute lasts ``minute_sec`` seconds: 60 plays the
window in real time; less is a time-compressed rehearsal (each minute's *rate* is kept,
held for ``minute_sec`` seconds, so a minute plays ``rate x minute_sec`` requests).

The schedule (:func:`recorded_starts`) follows the profile exactly: minute ``m``'s
``C`` starts are spaced evenly over its ``minute_sec`` seconds (its rate is
``C / minute_sec``), start ``k`` of the whole run goes to shard ``k % shards`` (so shards
split every minute's rate, as they split the other shapes), and each minute's starts are
given its endpoints in exactly its counts, interleaved (:func:`minute_endpoints`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedProfile:
    minute_sec: int
    """Seconds each recorded minute plays for (60: real time)."""
    endpoints: tuple[str, ...]
    """Load endpoints (keys of :data:`functions.load.scenarios.ENDPOINTS`) the profile
    uses, in a fixed order."""
    counts: tuple[tuple[int, ...], ...]
    """``counts[m][e]``: requests of ``endpoints[e]`` started in minute ``m``."""

    def __post_init__(self) -> None:
        if self.minute_sec < 1:
            raise ValueError("minute_sec must be at least 1")
        for row in self.counts:
            if len(row) != len(self.endpoints) or any(c < 0 for c in row):
                raise ValueError("each minute needs one count (>= 0) per endpoint")

    @property
    def minutes(self) -> int:
        return len(self.counts)

    @property
    def duration_sec(self) -> int:
        return self.minutes * self.minute_sec

    def minute_total(self, minute: int) -> int:
        return sum(self.counts[minute])

    def minute_rps(self, minute: int) -> float:
        """The rate minute ``minute`` plays at."""
        return self.minute_total(minute) / self.minute_sec

    @property
    def peak_rps(self) -> float:
        return max((self.minute_rps(m) for m in range(self.minutes)), default=0.0)

    @property
    def total(self) -> int:
        return sum(map(sum, self.counts))

    def rate_at(self, offset_sec: float) -> float:
        """The scheduled rate ``offset_sec`` into the run (0 outside it)."""
        if offset_sec < 0 or offset_sec >= self.duration_sec:
            return 0.0
        return self.minute_rps(int(offset_sec // self.minute_sec))

    def endpoint_totals(self) -> dict[str, int]:
        return {name: sum(row[e] for row in self.counts) for e, name in enumerate(self.endpoints)}

    def mix(self) -> tuple[tuple[str, float], ...]:
        """The whole window's shares per endpoint (what the run's summary lists)."""
        total = self.total
        return tuple(
            (name, count / total if total else 0.0)
            for name, count in self.endpoint_totals().items()
        )

    def to_json(self) -> dict[str, Any]:
        """Firestore-safe: a map of per-minute arrays (Firestore holds no nested arrays)."""
        return {
            "minuteSec": self.minute_sec,
            "endpoints": list(self.endpoints),
            "counts": {
                name: [row[e] for row in self.counts] for e, name in enumerate(self.endpoints)
            },
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> RecordedProfile:
        endpoints = tuple(str(name) for name in raw["endpoints"])
        columns = [[int(c) for c in raw["counts"][name]] for name in endpoints]
        minutes = len(columns[0]) if columns else 0
        return RecordedProfile(
            minute_sec=int(raw["minuteSec"]),
            endpoints=endpoints,
            counts=tuple(tuple(col[m] for col in columns) for m in range(minutes)),
        )


def _slots(quota: int, endpoint: int) -> Iterator[tuple[float, int]]:
    return (((k + 0.5) / quota, endpoint) for k in range(quota))


def minute_endpoints(row: tuple[int, ...]) -> Iterator[int]:
    """The endpoint index of each of a minute's starts, in order: exactly ``row[e]`` of
    endpoint ``e``, interleaved. Each endpoint's starts are spread evenly over the minute
    (its ``k``-th at ``(k + 0.5) / row[e]`` of the way) and the endpoints' sequences are
    merged in that order, so every stretch of the minute has the minute's mix (any
    prefix within about one start of each endpoint's exact share)."""
    return (e for _, e in heapq.merge(*(_slots(q, e) for e, q in enumerate(row) if q)))


def recorded_starts(
    profile: RecordedProfile, shard: int = 0, shards: int = 1
) -> Iterator[tuple[int, float, str]]:
    """Shard ``shard`` of ``shards``'s starts as ``(index, offset_sec, endpoint)``:
    minute ``m``'s starts evenly spaced over its seconds, run-wide start ``k`` on shard
    ``k % shards``."""
    first = 0
    minute_sec = profile.minute_sec
    names = profile.endpoints
    for m, row in enumerate(profile.counts):
        count = sum(row)
        begin = m * minute_sec
        step = minute_sec / count if count else 0.0
        mine = (shard - first) % shards
        for j, e in enumerate(minute_endpoints(row)):
            if j % shards == mine:
                yield first + j, round(begin + j * step, 9), names[e]
        first += count
