"""Per-second, per-endpoint results: recorded by a shard, merged exactly across shards.

Latencies are microseconds in HdrHistograms (``hdrhistogram``), one per second of the
schedule and endpoint; the second is the one the request was *scheduled* in, so shards
line up. A :class:`Slice` is what a shard ships (Firestore document or queue message):
histograms in HdrHistogram's own compressed encoding, plus counts. Merging adds the
decoded histograms, which is exact (same buckets everywhere).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from functions.load.scenarios import Thresholds
from shared import thresholds as t


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, t.LOAD_TEST_HISTOGRAM_MAX_US, t.LOAD_TEST_HISTOGRAM_SIGNIFICANT_DIGITS)


def decode(encoded: str) -> HdrHistogram:
    hist = new_histogram()
    hist.decode_and_add(encoded)
    return hist


@dataclass
class SecondStats:
    """One second of the schedule, all endpoints (or one shard's share of it)."""

    hist: dict[str, HdrHistogram] = field(default_factory=dict)
    scheduled: int = 0
    """Starts scheduled in this second (sent + dropped)."""
    sent: int = 0
    late: int = 0
    dropped: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    """``endpoint|kind`` -> count; kind is ``http_<status>``, ``timeout`` or the
    client exception's name."""
    shed: Counter[str] = field(default_factory=Counter)
    """endpoint -> requests the target shed (503 with ``Retry-After``): not errors, and
    not in the latency histograms."""

    def record(self, endpoint: str, latency_us: int) -> None:
        hist = self.hist.get(endpoint)
        if hist is None:
            hist = self.hist[endpoint] = new_histogram()
        hist.record_value(max(1, min(latency_us, t.LOAD_TEST_HISTOGRAM_MAX_US)))

    def add(self, other: SecondStats) -> None:
        for endpoint, hist in other.hist.items():
            mine = self.hist.get(endpoint)
            if mine is None:
                mine = self.hist[endpoint] = new_histogram()
            mine.add(hist)
        self.scheduled += other.scheduled
        self.sent += other.sent
        self.late += other.late
        self.dropped += other.dropped
        self.errors.update(other.errors)
        self.shed.update(other.shed)

    def to_json(self) -> dict[str, Any]:
        return {
            "hist": {ep: h.encode().decode("ascii") for ep, h in self.hist.items()},
            "scheduled": self.scheduled,
            "sent": self.sent,
            "late": self.late,
            "dropped": self.dropped,
            "errors": dict(self.errors),
            "shed": dict(self.shed),
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> SecondStats:
        return SecondStats(
            hist={ep: decode(enc) for ep, enc in raw["hist"].items()},
            scheduled=int(raw["scheduled"]),
            sent=int(raw["sent"]),
            late=int(raw["late"]),
            dropped=int(raw["dropped"]),
            errors=Counter({k: int(v) for k, v in raw["errors"].items()}),
            shed=Counter({k: int(v) for k, v in raw.get("shed", {}).items()}),
        )

    def total(self) -> HdrHistogram:
        merged = new_histogram()
        for hist in self.hist.values():
            merged.add(hist)
        return merged


Seconds = dict[int, SecondStats]


def seconds_to_json(seconds: Seconds) -> dict[str, Any]:
    return {str(sec): stats.to_json() for sec, stats in sorted(seconds.items())}


def seconds_from_json(raw: dict[str, Any]) -> Seconds:
    return {int(sec): SecondStats.from_json(stats) for sec, stats in raw.items()}


def merge(parts: list[Seconds]) -> Seconds:
    """Every shard's seconds added together (exact)."""
    merged: Seconds = defaultdict(SecondStats)
    for part in parts:
        for sec, stats in part.items():
            merged[sec].add(stats)
    return dict(merged)


def _ms(us: float) -> float:
    return round(us / 1000.0, 3)


def recorded(hist: HdrHistogram) -> list[tuple[int, int]]:
    """``(value, count)`` of every non-empty bucket in order, ``value`` being the bucket's
    highest equivalent value: what ``get_recorded_iterator`` yields, without its Python
    walk over every bucket of the range (a second's report took ~20 ms that way)."""
    counts = hist.counts[: hist.counts_len]
    return [
        (hist.get_highest_equivalent_value(hist.get_value_from_index(i)), c)
        for i, c in enumerate(counts)
        if c
    ]


def percentiles(hist: HdrHistogram, wanted: tuple[float, ...]) -> list[int]:
    """``get_value_at_percentile`` for each of ``wanted`` (ascending), in one pass."""
    buckets = recorded(hist)
    out = []
    total, at = 0, 0
    for pct in wanted:
        target = hist.get_target_count_at_percentile(pct)
        while at < len(buckets) and total + buckets[at][1] < target:
            total += buckets[at][1]
            at += 1
        out.append(buckets[at][0] if at < len(buckets) else 0)
    return out


def median_equivalent(hist: HdrHistogram, highest: int) -> int:
    """The middle of the bucket whose highest equivalent value is ``highest``: the value
    hdrh's ``get_mean_value`` weighs a bucket's count with (its private
    ``_hdr_median_equiv_value``: lowest + half the bucket's size), from public methods."""
    lowest: int = hist.get_lowest_equivalent_value(highest)
    return lowest + ((highest - lowest + 1) >> 1)


def latency_of(hist: HdrHistogram) -> dict[str, float]:
    """avg, p50, p95, p99 and max, exactly as hdrh's own methods compute them."""
    count = hist.get_total_count()
    if count == 0:
        return {"avg": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    mean = sum(c * median_equivalent(hist, v) for v, c in recorded(hist)) / count
    p50, p95, p99 = percentiles(hist, (50, 95, 99))
    return {
        "avg": _ms(mean),
        "p50": _ms(p50),
        "p95": _ms(p95),
        "p99": _ms(p99),
        "max": _ms(hist.get_max_value()),
    }


def error_kind(key: str) -> str:
    return key.split("|", 1)[1]


def summarize(
    seconds: Seconds, thresholds: Thresholds, elapsed_sec: float, target_rps: float
) -> dict[str, Any]:
    """The run's numbers and its verdict per threshold."""
    total = new_histogram()
    by_endpoint: dict[str, HdrHistogram] = {}
    scheduled = sent = late = dropped = 0
    errors: Counter[str] = Counter()
    shed: Counter[str] = Counter()
    for stats in seconds.values():
        for endpoint, hist in stats.hist.items():
            total.add(hist)
            mine = by_endpoint.setdefault(endpoint, new_histogram())
            mine.add(hist)
        scheduled += stats.scheduled
        sent += stats.sent
        late += stats.late
        dropped += stats.dropped
        errors.update(stats.errors)
        shed.update(stats.shed)
    error_count = sum(errors.values())
    shed_count = sum(shed.values())
    by_kind: Counter[str] = Counter()
    for key, count in errors.items():
        by_kind[error_kind(key)] += count
    latency = latency_of(total)
    # the error rate is of the requests the target took on (shed ones are not errors)
    served = sent - shed_count
    error_rate = 100.0 * error_count / served if served else 0.0
    shed_rate = 100.0 * shed_count / sent if sent else 0.0
    dropped_pct = 100.0 * dropped / scheduled if scheduled else 0.0
    verdicts = verdict(latency, error_rate, dropped_pct, sent, thresholds, shed_rate)
    return {
        "targetRps": target_rps,
        "achievedRps": round(sent / elapsed_sec, 2) if elapsed_sec > 0 else 0.0,
        "scheduledRps": round(scheduled / elapsed_sec, 2) if elapsed_sec > 0 else 0.0,
        "elapsedSec": round(elapsed_sec, 3),
        "scheduled": scheduled,
        "requests": sent,
        "completed": total.get_total_count(),
        "errors": error_count,
        "errorRatePct": round(error_rate, 4),
        "errorsByKind": dict(by_kind),
        "shed": shed_count,
        "shedRatePct": round(shed_rate, 4),
        "shedByEndpoint": dict(sorted(shed.items())),
        "dropped": dropped,
        "droppedPct": round(dropped_pct, 4),
        "late": late,
        "latencyMs": latency,
        "endpoints": {ep: latency_of(h) | {"count": h.get_total_count()}
                      for ep, h in sorted(by_endpoint.items())},
        "thresholds": verdicts,
        "verdict": "pass" if all(v["passed"] for v in verdicts) else "fail",
    }  # fmt: skip


def verdict(
    latency: dict[str, float],
    error_rate_pct: float,
    dropped_pct: float,
    requests: int,
    th: Thresholds,
    shed_pct: float = 0.0,
) -> list[dict[str, Any]]:
    """Each threshold with its limit, the measured value and whether it held. A run that
    sent nothing fails (no evidence is not a pass); neither does one the target mostly
    shed (``shedPct``: shed requests are not errors, but they were not served)."""
    rows = [
        ("avgMs", th.avg_ms, latency["avg"]),
        ("p95Ms", th.p95_ms, latency["p95"]),
        ("p99Ms", th.p99_ms, latency["p99"]),
        ("errorRatePct", th.error_rate_pct, error_rate_pct),
        ("droppedPct", th.dropped_pct, dropped_pct),
        ("shedPct", t.LOAD_TEST_SHED_PCT, shed_pct),
    ]
    out = [
        {"name": name, "limit": limit, "actual": round(actual, 4), "passed": actual < limit}
        for name, limit, actual in rows
    ]
    out.append({"name": "requests", "limit": 1, "actual": requests, "passed": requests > 0})
    return out


def breached(stats: SecondStats, th: Thresholds) -> bool:
    """One second over a threshold (abort-on-fail counts consecutive ones)."""
    errors = sum(stats.errors.values())
    shed = sum(stats.shed.values())
    served = stats.sent - shed
    if served and 100.0 * errors / served >= th.error_rate_pct:
        return True
    if stats.sent and 100.0 * shed / stats.sent >= t.LOAD_TEST_SHED_PCT:
        return True
    hist = stats.total()
    p99_ms = float(percentiles(hist, (99,))[0]) / 1000
    return bool(hist.get_total_count() > 0 and p99_ms >= th.p99_ms)


def timeline(seconds: Seconds) -> list[dict[str, Any]]:
    """Per second: rate, percentiles, errors, drops."""
    rows = []
    for sec in sorted(seconds):
        stats = seconds[sec]
        lat = latency_of(stats.total())
        rows.append(
            {
                "sec": sec,
                "scheduled": stats.scheduled,
                "sent": stats.sent,
                "errors": sum(stats.errors.values()),
                "shed": sum(stats.shed.values()),
                "dropped": stats.dropped,
                "late": stats.late,
                "p50Ms": lat["p50"],
                "p95Ms": lat["p95"],
                "p99Ms": lat["p99"],
                "maxMs": lat["max"],
            }
        )
    return rows


def heatmap(seconds: Seconds) -> dict[str, Any]:
    """Time x latency buckets: ``counts[i][j]`` requests of second ``secs[i]`` whose
    latency is at most ``bucketsMs[j]`` and above the previous bound (last: above all)."""
    bounds = t.LOAD_TEST_HEATMAP_BUCKETS_MS
    secs = sorted(seconds)
    counts: list[list[int]] = []
    for sec in secs:
        row = [0] * (len(bounds) + 1)
        for value, count in recorded(seconds[sec].total()):
            value_ms = value / 1000.0
            j = next((i for i, b in enumerate(bounds) if value_ms <= b), len(bounds))
            row[j] += count
        counts.append(row)
    return {"secs": secs, "bucketsMs": list(bounds), "counts": counts}


def crash_map(seconds: Seconds) -> list[dict[str, Any]]:
    """Errors by endpoint x kind x second."""
    rows = []
    for sec in sorted(seconds):
        for key, count in sorted(seconds[sec].errors.items()):
            endpoint, kind = key.split("|", 1)
            rows.append({"sec": sec, "endpoint": endpoint, "kind": kind, "count": count})
    return rows
