"""DDoS detection: pure functions of per-minute traffic counts and a baseline."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import thresholds as t
from shared.models.alerts import Severity
from shared.models.ddos import DetectionKind
from shared.ratelimit import keys


@dataclass(frozen=True)
class MinuteTraffic:
    """What the middleware counted in one minute (or the elapsed part of it)."""

    minute: int
    requests: int
    distinct_ips: int
    top_ips: Sequence[tuple[str, int]] = ()
    """Heaviest sources first: (ip, requests)."""
    top_fingerprints: Sequence[tuple[str, int, int]] = ()
    """Heaviest client fingerprints first: (fingerprint, requests, distinct IPs)."""
    elapsed_fraction: float = 1.0
    """1 for a complete minute; the share that has passed for the current one."""
    bot_scored_low: int = 0
    """Requests whose proven Cloudflare bot score was under 30 (likely automated)."""

    def per_min(self, count: int) -> float:
        return count / self.elapsed_fraction


@dataclass(frozen=True)
class Baseline:
    requests_per_min: float
    distinct_ips_per_min: float


@dataclass(frozen=True)
class Detection:
    kind: DetectionKind
    severity: Severity
    evidence: dict[str, Any]
    block_sources: tuple[str, ...] = field(default=())

    @property
    def critical(self) -> bool:
        return self.severity is Severity.CRITICAL


def baseline_of(history: Sequence[tuple[int, int]]) -> Baseline:
    """The median of past minutes' (requests, distinct IPs), never below the floors."""
    requests = statistics.median([r for r, _ in history]) if history else 0.0
    ips = statistics.median([i for _, i in history]) if history else 0.0
    return Baseline(
        requests_per_min=max(float(requests), float(t.DDOS_MIN_REQUESTS_PER_MIN)),
        distinct_ips_per_min=max(float(ips), float(t.DDOS_MIN_DISTINCT_IPS_PER_MIN)),
    )


def detect(
    traffic: MinuteTraffic,
    baseline: Baseline,
    usual_share_pct: Mapping[str, float] | None = None,
) -> list[Detection]:
    """Every attack pattern this minute's traffic shows, with its severity.

    ``usual_share_pct`` is each top fingerprint's usual share of traffic (0 when
    it was not seen before)."""
    found: list[Detection] = []
    flooders = [
        (ip, traffic.per_min(n))
        for ip, n in traffic.top_ips
        if traffic.per_min(n) > t.DDOS_SINGLE_SOURCE_PER_MIN
    ][: t.DDOS_BLOCK_TOP_SOURCES_COUNT]
    if flooders:
        found.append(
            Detection(
                DetectionKind.SINGLE_SOURCE_FLOOD,
                Severity.CRITICAL,
                {
                    "sources": [{"ip": ip, "requestsPerMin": round(r, 1)} for ip, r in flooders],
                    "thresholdPerMin": t.DDOS_SINGLE_SOURCE_PER_MIN,
                },
                tuple(ip for ip, _ in flooders),
            )
        )

    # The spike is judged on the traffic the single sources above do not explain: each of
    # them gets its own per-key answer, and one address must never switch on the global
    # mode (a busy carrier NAT would, on ordinary traffic).
    rate = max(0.0, traffic.per_min(traffic.requests) - sum(r for _, r in flooders))
    spike = rate / baseline.requests_per_min
    if spike >= t.DDOS_SPIKE_FACTOR:
        severity = Severity.CRITICAL if spike >= t.DDOS_SPIKE_CRITICAL_FACTOR else Severity.HIGH
        found.append(
            Detection(
                DetectionKind.TRAFFIC_SPIKE,
                severity,
                {
                    "requestsPerMin": round(rate, 1),
                    "baselinePerMin": round(baseline.requests_per_min, 1),
                    "factor": round(spike, 2),
                },
            )
        )
        top_share = (
            traffic.top_ips[0][1] / traffic.requests * 100
            if traffic.top_ips and traffic.requests
            else 0.0
        )
        ip_factor = traffic.distinct_ips / baseline.distinct_ips_per_min
        if (
            ip_factor >= t.DDOS_DISTRIBUTED_IPS_FACTOR
            and top_share <= t.DDOS_DISTRIBUTED_MAX_TOP_IP_SHARE_PCT
        ):
            found.append(
                Detection(
                    DetectionKind.DISTRIBUTED_ATTACK,
                    Severity.CRITICAL,
                    {
                        "distinctIps": traffic.distinct_ips,
                        "baselineDistinctIps": round(baseline.distinct_ips_per_min, 1),
                        "topIpSharePct": round(top_share, 2),
                        "factor": round(spike, 2),
                    },
                )
            )

    low_share = traffic.bot_scored_low * 100 / traffic.requests if traffic.requests else 0.0
    if traffic.bot_scored_low and low_share >= t.DDOS_BOT_SCORE_LOW_SHARE_PCT:
        # Cloudflare's own verdict, proven by the origin secret: most of the minute is
        # automated. Critical only in a spike (a busy minute of crawlers is not an attack).
        found.append(
            Detection(
                DetectionKind.BOT_SWARM,
                Severity.CRITICAL if spike >= t.DDOS_SPIKE_FACTOR else Severity.HIGH,
                {
                    "botScoreLowSharePct": round(low_share, 2),
                    "botScoredLow": traffic.bot_scored_low,
                    "factor": round(spike, 2),
                },
            )
        )

    usual = usual_share_pct or {}
    for fp, n, ips in traffic.top_fingerprints:
        share = n / traffic.requests * 100 if traffic.requests else 0.0
        if (
            ips >= t.DDOS_BOT_SWARM_MIN_IPS
            and share >= t.DDOS_BOT_SWARM_MIN_SHARE_PCT
            and usual.get(fp, 0.0) < t.DDOS_BOT_SWARM_MAX_USUAL_SHARE_PCT
        ):
            severity = Severity.CRITICAL if spike >= t.DDOS_SPIKE_FACTOR else Severity.HIGH
            found.append(
                Detection(
                    DetectionKind.BOT_SWARM,
                    severity,
                    {
                        "fingerprint": fp,
                        "distinctIps": ips,
                        "sharePct": round(share, 2),
                        "usualSharePct": round(usual.get(fp, 0.0), 2),
                    },
                )
            )
            break
    return found


def usual_shares(history: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each fingerprint's median share (percent) over the minutes it is given for."""
    return {
        fp: float(statistics.median(shares)) if shares else 0.0 for fp, shares in history.items()
    }


def merge(detections: Sequence[Detection]) -> list[Detection]:
    """One detection per kind: the most severe (ties: the first)."""
    best: dict[DetectionKind, Detection] = {}
    for d in detections:
        kept = best.get(d.kind)
        if kept is None or d.severity.rank > kept.severity.rank:
            best[d.kind] = d
    return list(best.values())


def minutes_back(now: datetime, count: int, skip: int = 0) -> list[int]:
    """The ids (epoch minutes) of the ``count`` minutes before ``now``'s minute, after
    skipping ``skip``."""
    current = keys.minute_of(now)
    return [current - skip - i for i in range(1, count + 1)]
