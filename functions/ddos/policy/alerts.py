"""DDoS alerts: the alerts of detections, DDoS mode, held brute-force blocks and Redis
memory, and which of them a detector run resolves (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from functions.ddos.policy.detection import Detection
from functions.ddos.policy.mitigation import percent_of
from shared import thresholds as t
from shared.alerts.policy import AlertResolve, AlertSpec
from shared.models.alerts import AlertSource, Severity

MODE_ALERT_KEY = "ddos:mode"
"""The dedup key of the DDoS-mode alert (one while the mode is on)."""


def detection_alert_key(kind: str) -> str:
    """One alert per kind of critical detection while it keeps being detected."""
    return f"ddos:detection:{kind}"


def detection_alert(
    detection: Detection, mitigated: bool, held: int, evidence: Mapping[str, Any]
) -> AlertSpec:
    """The alert of a critical detection: what was seen, what was done, what is held for a
    human (blocks over the blast-radius cap)."""
    what = "auto-mitigated" if mitigated else "not mitigated"
    if held:
        what += f"; {held} action(s) held for a human"
    return AlertSpec(
        source=AlertSource.DDOS,
        kind=detection.kind.value,
        dedup_key=detection_alert_key(detection.kind.value),
        severity=detection.severity,
        title=f"DDoS: {detection.kind.value.replace('_', ' ')} ({what})",
        evidence=evidence,
    )


@dataclass(frozen=True)
class RedisMemory:
    """``INFO memory`` of one Redis the protection uses."""

    role: str
    """``enforcement`` (blocks, buckets, passes) or ``telemetry`` (the traffic counters)."""
    used_bytes: int
    max_bytes: int
    """``maxmemory``: 0 when the server has none."""
    policy: str
    shared: bool = False
    """Telemetry shares this Redis (no ``PACK391_REDIS_TELEMETRY_URL``)."""


def redis_memory_alert_key(role: str) -> str:
    return f"ddos:redis_memory:{role}"


def redis_memory_changes(
    memory: Sequence[RedisMemory], pct: float = t.REDIS_MEMORY_ALERT_PCT
) -> list[AlertSpec | AlertResolve]:
    """Raise an alert for each Redis at ``pct`` % or more of its ``maxmemory`` (critical for
    the enforcement Redis: when it is full, wallet and payment are refused for everyone);
    resolve it once below. A Redis without ``maxmemory`` is never judged full."""
    out: list[AlertSpec | AlertResolve] = []
    for m in memory:
        key = redis_memory_alert_key(m.role)
        used_pct = percent_of(m.used_bytes, m.max_bytes) if m.max_bytes > 0 else 0.0
        if used_pct < pct:
            out.append(AlertResolve(key, f"Redis ({m.role}) memory back under {pct:g}%"))
            continue
        out.append(
            AlertSpec(
                source=AlertSource.DDOS,
                kind="redis_memory",
                dedup_key=key,
                severity=Severity.CRITICAL if m.role == "enforcement" else Severity.HIGH,
                title=f"Redis ({m.role}) at {used_pct:g}% of its memory",
                evidence={
                    "role": m.role,
                    "usedBytes": m.used_bytes,
                    "maxBytes": m.max_bytes,
                    "policy": m.policy,
                    "telemetryShared": m.shared,
                },
                rule="redis_memory_pct",
                threshold=pct,
                value=used_pct,
            )
        )
    return out


BRUTE_FORCE_HELD_ALERT_KEY = "ddos:bruteforce_held"


def brute_force_held_alert(kind: str, ip: str) -> AlertSpec:
    """A shared address reached the distinct-failing-accounts limit: its block is held
    for a human (blocking it would lock out everyone behind it). Acknowledging resolves it."""
    return AlertSpec(
        source=AlertSource.DDOS,
        kind="brute_force_held",
        dedup_key=BRUTE_FORCE_HELD_ALERT_KEY,
        severity=Severity.HIGH,
        title=f"Brute force from shared address {ip} ({kind}): block held for a human",
        evidence={
            "address": ip,
            "kind": kind,
            "minAccounts": t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS,
            "sharedMinUsers": t.DDOS_SHARED_ADDRESS_MIN_USERS,
        },
        resolve_on_acknowledge=True,
    )


def mode_alert(reason: str, until_iso: str, evidence: Mapping[str, Any]) -> AlertSpec:
    """The alert of DDoS mode (every limit scaled down for everyone): raised when the
    detector turns it on or extends it, resolved when it ends."""
    return AlertSpec(
        source=AlertSource.DDOS,
        kind="ddos_mode",
        dedup_key=MODE_ALERT_KEY,
        severity=Severity.CRITICAL,
        title=f"DDoS mode on until {until_iso}: {reason}",
        evidence={**evidence, "reason": reason, "until": until_iso},
    )


def cleared_alerts(
    active_keys: Sequence[str], critical_kinds: set[str], mode_on: bool
) -> list[AlertResolve]:
    """The DDoS alerts a detector run resolves: the DDoS-mode alert once the mode has ended
    (expired), and each detection alert whose kind this run no longer detects as critical
    (the condition no longer holds; blocks it placed stay until they expire or are
    lifted). Other areas' keys are left alone."""
    out: list[AlertResolve] = []
    for key in sorted(set(active_keys)):
        if key == MODE_ALERT_KEY:
            if not mode_on:
                out.append(AlertResolve(key, "DDoS mode ended"))
        elif key.startswith("ddos:detection:"):
            kind = key.removeprefix("ddos:detection:")
            if kind not in critical_kinds:
                out.append(AlertResolve(key, f"{kind.replace('_', ' ')} no longer detected"))
    return out
