"""Load shaped like production: a plan from the recorded minutes of a past window
(``pack391 loadtest --from-metrics``, ``pack391_runLoadTest``'s ``fromMetrics``). Pure:
functions of the minute documents, the request and ``now``.

The SLI recorder's minute roll-up writes one :class:`shared.models.slo.SliMinuteDoc` per
minute (``pack391_sli_minutes``) with the requests answered per recorded name. From the
minutes of ``[start, end)`` and a scale factor, :func:`recorded_plan` builds a
``recorded`` plan whose rate follows each minute's scaled total and whose mix follows
that minute's per-endpoint shares:

- **Names.** A recorded name that is a load endpoint (a key of
  :data:`functions.load.scenarios.ENDPOINTS`: what the local sandbox records under) is
  played as itself; any other name is played as the endpoint the request's ``map``
  gives it (``--map NAME=ENDPOINT``), and otherwise is *unmapped*: not played, and
  listed with its requests in the report. Nothing is dropped silently.
- **Missing minutes.** A minute of the window with no document recorded nothing (the
  recorder writes a minute only when something was answered, or was not running): it
  plays as a zero-rate minute, and the report lists it.
- **Rounding.** A minute plays ``n x scale x minuteSec / 60`` requests. Minute totals
  are rounded on the running sum (the played total never drifts more than half a
  request from the exact one), and a minute's total is split between its endpoints by
  largest remainder (Hamilton's method: each within one request of its exact share).
- **Time compression.** ``minuteSec`` under 60 keeps every minute's *rate* and plays it
  for fewer seconds: a rehearsal or a test (``minuteSec=1`` plays a 3-minute window in
  3 s). A window longer than ``LOAD_TEST_MAX_DURATION_SEC`` at one minute a minute (25
  minutes) must be compressed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from functions.load.profile import RecordedProfile
from functions.load.scenarios import (
    ENDPOINTS,
    Plan,
    ScenarioType,
    Shape,
    Thresholds,
    shards_for,
)
from shared import thresholds as t
from shared.errors import InvalidInput
from shared.models.slo import SliMinuteDoc

SCENARIO_ID = "from_metrics"
"""The scenario id of a production-shaped run (its run document and report)."""

MINUTE = timedelta(minutes=1)
MISSING_RANGES_SHOWN = 50
"""The report lists at most this many runs of missing minutes (and counts them all)."""

_RELATIVE = re.compile(r"last:(\d{1,5})([mh])")
_DURATION = re.compile(r"PT(?:(\d{1,3})H)?(?:(\d{1,5})M)?")


@dataclass(frozen=True)
class Window:
    """The recorded window ``[start, end)``: whole minutes, UTC."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> int:
        return int((self.end - self.start) / MINUTE)

    @property
    def label(self) -> str:
        return f"{iso_minute(self.start)}/{iso_minute(self.end)}"


def iso_minute(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def parse_instant(text: str, field: str) -> datetime:
    """An ISO 8601 instant with its zone, a whole minute (``2026-12-05T18:00Z``)."""
    raw = text.strip()
    try:
        at = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "Zz" else raw)
    except ValueError:
        raise InvalidInput(
            field, f"{text!r} is not an ISO 8601 time such as 2026-12-05T18:00Z"
        ) from None
    if at.tzinfo is None:
        raise InvalidInput(field, f"{text!r} has no time zone (write 2026-12-05T18:00Z)")
    if at.second or at.microsecond:
        raise InvalidInput(field, f"{text!r} is not a whole minute")
    return at.astimezone(UTC)


def _duration(text: str, field: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip().upper())
    if match is None or not any(match.groups()):
        raise InvalidInput(field, f"{text!r} is neither a time nor a duration such as PT1H")
    hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes)


def parse_window(text: str, now: datetime, field: str = "fromMetrics") -> Window:
    """``START/END`` (ISO 8601, ``2026-12-05T18:00Z/2026-12-05T19:00Z``), ``START/PT1H``
    (a start and a duration), or ``last:90m`` / ``last:2h`` (ending at the start of the
    current minute: the last complete one). Checked by :func:`check_window`."""
    raw = text.strip()
    relative = _RELATIVE.fullmatch(raw.lower())
    if relative is not None:
        amount, unit = int(relative.group(1)), relative.group(2)
        end = now.astimezone(UTC).replace(second=0, microsecond=0)
        span = timedelta(hours=amount) if unit == "h" else timedelta(minutes=amount)
        window = Window(end - span, end)
    elif raw.count("/") == 1:
        first, second = raw.split("/")
        start = parse_instant(first, f"{field}.start")
        if second.strip().upper().startswith("P"):
            window = Window(start, start + _duration(second, f"{field}.end"))
        else:
            window = Window(start, parse_instant(second, f"{field}.end"))
    else:
        raise InvalidInput(
            field,
            f"{text!r}: give START/END (2026-12-05T18:00Z/2026-12-05T19:00Z), START/PT1H "
            "or last:90m",
        )
    check_window(window, now, field)
    return window


def check_window(window: Window, now: datetime, field: str = "fromMetrics") -> None:
    """Start before end, not in the future, at most ``LOAD_TEST_FROM_METRICS_MAX_WINDOW_MIN``."""
    if window.end <= window.start:
        raise InvalidInput(f"{field}.end", "must be after start")
    if window.end > now:
        raise InvalidInput(
            f"{field}.end",
            f"{iso_minute(window.end)} is in the future: the window's last minute must be over",
        )
    limit = t.LOAD_TEST_FROM_METRICS_MAX_WINDOW_MIN
    if window.minutes > limit:
        raise InvalidInput(
            f"{field}.end", f"the window is {window.minutes} minutes, over the {limit} allowed"
        )


@dataclass(frozen=True)
class RecordedPlan:
    plan: Plan
    report: dict[str, Any]
    """What the window held and what the plan plays (:func:`recorded_plan`)."""


def _round(x: Fraction) -> int:
    """Half up (a running sum's rounding must not depend on parity)."""
    return math.floor(x + Fraction(1, 2))


def apportion(weights: Sequence[int], total: int) -> tuple[int, ...]:
    """``total`` split in proportion to ``weights`` by largest remainder (ties: the
    earlier weight): each part within one of its exact share, the parts summing to
    ``total``."""
    whole = sum(weights)
    if total <= 0 or whole <= 0:
        return tuple(0 for _ in weights)
    exact = [Fraction(w * total, whole) for w in weights]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return tuple(parts)


def _missing_ranges(window: Window, present: set[int]) -> list[list[str]]:
    ranges: list[list[str]] = []
    run_start: int | None = None
    for m in range(window.minutes + 1):
        missing = m < window.minutes and m not in present
        if missing and run_start is None:
            run_start = m
        elif not missing and run_start is not None:
            begin, end = window.start + run_start * MINUTE, window.start + m * MINUTE
            ranges.append([iso_minute(begin), iso_minute(end)])
            run_start = None
    return ranges


def _check_options(scale: float, minute_sec: int, mapping: Mapping[str, str], minutes: int) -> None:
    if not 0 < scale <= t.LOAD_TEST_FROM_METRICS_MAX_SCALE:
        most = t.LOAD_TEST_FROM_METRICS_MAX_SCALE
        raise InvalidInput("fromMetrics.scale", f"must be over 0 and at most {most:g}")
    if not 1 <= minute_sec <= t.LOAD_TEST_FROM_METRICS_MINUTE_SEC:
        raise InvalidInput(
            "fromMetrics.minuteSec", f"must be 1..{t.LOAD_TEST_FROM_METRICS_MINUTE_SEC}"
        )
    for name, endpoint in mapping.items():
        if endpoint not in ENDPOINTS:
            raise InvalidInput(
                f"fromMetrics.map.{name}",
                f"{endpoint!r} is not a load endpoint ({', '.join(ENDPOINTS)})",
            )
    longest = t.LOAD_TEST_MAX_DURATION_SEC
    if minutes * minute_sec > longest:
        raise InvalidInput(
            "fromMetrics.minuteSec",
            f"{minutes} minutes at {minute_sec} s each play {minutes * minute_sec} s, over the "
            f"{longest} s a run may last: compress time (minuteSec at most "
            f"{max(longest // minutes, 1)}) or choose a shorter window",
        )


def recorded_plan(
    docs: Sequence[SliMinuteDoc],
    window: Window,
    target: str,
    *,
    scale: float = 1.0,
    minute_sec: int = t.LOAD_TEST_FROM_METRICS_MINUTE_SEC,
    mapping: Mapping[str, str] | None = None,
    shards: int | None = None,
    thresholds: Thresholds | None = None,
    timeout_sec: float | None = None,
    max_in_flight: int | None = None,
    abort_on_fail: bool = False,
) -> RecordedPlan:
    """The ``recorded`` plan of ``window``'s minute documents (those outside the window
    are ignored), scaled by ``scale``; raises :class:`InvalidInput` naming the field."""
    names = dict(mapping or {})
    _check_options(scale, minute_sec, names, window.minutes)
    recorded: list[Counter[str]] = [Counter() for _ in range(window.minutes)]
    unmapped: Counter[str] = Counter()
    used_map: dict[str, str] = {}
    present: set[int] = set()
    all_requests = 0
    for doc in docs:
        m = int((doc.at.astimezone(UTC) - window.start) // MINUTE)
        if not 0 <= m < window.minutes:
            continue
        present.add(m)
        for name, sli in doc.callables.items():
            all_requests += sli.n
            endpoint = names.get(name, name if name in ENDPOINTS else None)
            if endpoint is None:
                unmapped[name] += sli.n
                continue
            if endpoint != name and sli.n:
                used_map[name] = endpoint
            recorded[m][endpoint] += sli.n
    played_recorded = sum(sum(c.values()) for c in recorded)
    if all_requests == 0:
        raise InvalidInput(
            "fromMetrics",
            f"no recorded traffic in {window.label} ({len(present)} of {window.minutes} minutes "
            f"recorded; minutes are kept {t.SLO_MINUTES_RETENTION_DAYS} days)",
        )
    if played_recorded == 0:
        raise InvalidInput(
            "fromMetrics.map",
            f"the traffic of {window.label} is recorded only under names that are not load "
            f"endpoints ({', '.join(sorted(unmapped))}): map them to endpoints",
        )
    endpoints = tuple(e for e in ENDPOINTS if any(c[e] for c in recorded))
    factor = Fraction(scale) * minute_sec / 60
    counts: list[tuple[int, ...]] = []
    running = 0
    for minute in recorded:
        before = _round(running * factor)
        running += sum(minute.values())
        counts.append(apportion([minute[e] for e in endpoints], _round(running * factor) - before))
    profile = RecordedProfile(minute_sec, endpoints, tuple(counts))
    peak = profile.peak_rps
    if profile.total == 0:
        raise InvalidInput("fromMetrics.scale", f"scale {scale:g} plays no request of the window")
    cap = t.LOAD_TEST_GLOBAL_RPS_CAP
    if peak > cap:
        raise InvalidInput(
            "fromMetrics.scale",
            f"the window's busiest minute at scale {scale:g} is {peak:g} RPS, over the global "
            f"cap of {cap:g} RPS: scale at most {scale * cap / peak:.4g}",
        )
    plan = Plan(
        scenario_id=SCENARIO_ID,
        type=ScenarioType.RECORDED,
        shape=Shape.RECORDED,
        rps=peak,
        duration_sec=profile.duration_sec,
        target=target.rstrip("/"),
        shards=shards if shards is not None else shards_for(peak),
        mix=profile.mix(),
        thresholds=thresholds or Thresholds(),
        timeout_sec=timeout_sec if timeout_sec is not None else t.LOAD_TEST_REQUEST_TIMEOUT_SEC,
        max_in_flight=(
            max_in_flight if max_in_flight is not None else t.LOAD_TEST_MAX_IN_FLIGHT_PER_SHARD
        ),
        abort_on_fail=abort_on_fail,
        profile=profile,
    )
    missing = _missing_ranges(window, present)
    planned = profile.endpoint_totals()
    report = {
        "window": {
            "start": iso_minute(window.start),
            "end": iso_minute(window.end),
            "minutes": window.minutes,
        },
        "scale": scale,
        "minuteSec": minute_sec,
        "durationSec": profile.duration_sec,
        "recordedMinutes": len(present),
        "missingMinutes": window.minutes - len(present),
        "missing": missing[:MISSING_RANGES_SHOWN],
        "recordedRequests": all_requests,
        "plannedRequests": profile.total,
        "peakRps": peak,
        "meanRps": round(profile.total / profile.duration_sec, 3),
        "endpoints": {
            e: {"recorded": sum(c[e] for c in recorded), "planned": planned[e]} for e in endpoints
        },
        "mapped": dict(sorted(used_map.items())),
        "unmapped": dict(sorted(unmapped.items())),
        "unmappedPct": round(100.0 * sum(unmapped.values()) / all_requests, 3),
    }
    return RecordedPlan(plan, report)
