"""DDoS detection: pure functions of per-minute traffic counts and a baseline."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import thresholds as t
from shared.alerts.policy import AlertResolve, AlertSpec
from shared.clock import from_ms
from shared.models.alerts import AlertSource, Severity
from shared.models.ddos import BlockDoc, BlockKind, BlockScope, DetectionKind
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


# ---------------------------------------------------------------- mitigation (issue 11)


@dataclass(frozen=True)
class AddressUsers:
    """Who was behind one flooding address in the judged minute."""

    ip: str
    requests_per_min: float
    distinct_users: int
    top_users: Sequence[tuple[str, float]] = ()
    """Heaviest signed-in users behind the address: (uid, requests per minute)."""


@dataclass(frozen=True)
class MitigationAction:
    """One automatic action and why: ``kind`` is one of :data:`ACTION_KINDS`; ``target``
    the address or uid (empty for DDoS mode)."""

    kind: str
    target: str
    blast_radius_pct: float
    evidence: dict[str, Any]


ACTION_KINDS = ("ddos_mode", "anon_lockdown", "block_address", "block_user", "refuse_anonymous")
"""``refuse_anonymous``: the address is refused for traffic without a valid token (no
token, a bad one), which hurts no signed-in user: the narrow action applied whenever an
address block is held. ``anon_lockdown``: the same for every address, the first answer to
every global signal."""

GLOBAL_KINDS = frozenset(
    {DetectionKind.TRAFFIC_SPIKE, DetectionKind.DISTRIBUTED_ATTACK, DetectionKind.BOT_SWARM}
)
"""Only these switch on DDoS mode (limits scaled down for everyone): a single source gets a
per-key answer."""


@dataclass(frozen=True)
class MitigationPlan:
    apply: tuple[MitigationAction, ...]
    held: tuple[MitigationAction, ...]
    """Actions over the blast-radius cap: not applied; an alert asks a human."""
    skipped: tuple[MitigationAction, ...]
    """Actions on allowlisted addresses: never taken."""
    shadowed: tuple[MitigationAction, ...] = ()
    """Actions of a kind in shadow mode: recorded with their evidence, not enforced."""


def _pct(part: float, whole: float) -> float:
    return round(part * 100 / whole, 2) if whole > 0 else 0.0


def ddos_mode_blast_radius_pct(over_users: Sequence[int], users: Sequence[int]) -> float:
    """Share of usual (baseline) established users whom DDoS mode's scaled-down limits
    would have denied: per baseline minute, the established users who used more of a
    limit than the mode allows, over the established users of that minute; the median
    minute. Measured in people with some history (not requests, not anonymous or new
    accounts, not staff), so a few accounts running near their limits do not make the
    mode look dangerous, and throwaway accounts do not count."""
    shares = [_pct(o, u) for o, u in zip(over_users, users, strict=True) if u > 0]
    return round(float(statistics.median(shares)), 2) if shares else 0.0


def plan_mitigation(
    critical: Sequence[Detection],
    addresses: Mapping[str, AddressUsers],
    distinct_users: int,
    ddos_mode_blast_pct: float,
    allowlisted: Callable[[str], bool],
    cap_pct: float = t.DDOS_BLAST_RADIUS_MAX_PCT,
    shadow: frozenset[str] = frozenset(),
    tokenless_share_pct: float = 0.0,
    baseline_minutes: int = t.DDOS_BASELINE_WINDOW_MIN,
) -> MitigationPlan:
    """What auto-mitigation does about ``critical`` detections.

    - A global signal (:data:`GLOBAL_KINDS`) locks out traffic without a valid token
      (``anon_lockdown``: no signed-in user feels it). DDoS mode (limits scaled down for
      everyone) comes on top only when the attack is not token-less (less than
      ``DDOS_TOKENLESS_SHARE_PCT`` of the minute without a valid token: ``tokenless_share_pct``)
      and it would deny at most ``cap_pct`` of usual established users. With fewer than
      ``DDOS_MIN_BASELINE_MINUTES`` minutes of history (a new deploy, the first minutes
      of a launch) "usual" is unknown, so the mode is held for a human.
    - A shared address whose rate its established users explain (at most
      ``DDOS_SHARED_PER_USER_PER_MIN`` each: a busy carrier NAT) is left alone, skipped.
    - Each flooding address is blocked, unless it is allowlisted, or shared (at least
      ``DDOS_SHARED_ADDRESS_MIN_USERS`` established users behind it: a NAT or a front end,
      never blocked automatically: its flooding users are blocked instead), or blocking it
      would deny more than ``cap_pct`` of the minute's established users.
    - A held address block is never "unmitigated": the address is refused for traffic
      without a valid token (``refuse_anonymous``), which no signed-in user feels.
    - A kind in ``shadow`` is recorded with what it would have done, not enforced.
    ``addresses`` and ``distinct_users`` count established users only.
    Held actions are the human's to take (``pack391_liftBlock`` / the allowlist undo)."""
    apply: list[MitigationAction] = []
    held: list[MitigationAction] = []
    skipped: list[MitigationAction] = []
    if not critical:
        return MitigationPlan((), (), ())
    global_kinds = sorted({d.kind.value for d in critical if d.kind in GLOBAL_KINDS})
    if global_kinds:
        signal = {"detections": global_kinds, "tokenlessSharePct": round(tokenless_share_pct, 2)}
        apply.append(MitigationAction("anon_lockdown", "", 0.0, signal))
        if tokenless_share_pct < t.DDOS_TOKENLESS_SHARE_PCT:
            mode = MitigationAction(
                "ddos_mode",
                "",
                ddos_mode_blast_pct,
                {
                    **signal,
                    "blastRadiusPct": ddos_mode_blast_pct,
                    "capPct": cap_pct,
                    "baselineMinutes": baseline_minutes,
                },
            )
            unknown = baseline_minutes < t.DDOS_MIN_BASELINE_MINUTES
            (held if unknown or ddos_mode_blast_pct > cap_pct else apply).append(mode)

    seen: set[str] = set()
    for detection in critical:
        for ip in detection.block_sources:
            if ip in seen:
                continue
            seen.add(ip)
            who = addresses.get(ip, AddressUsers(ip, 0.0, 0))
            flooders = [
                (uid, rate) for uid, rate in who.top_users if rate > t.DDOS_SINGLE_USER_PER_MIN
            ]
            evidence: dict[str, Any] = {
                "detection": detection.kind.value,
                "requestsPerMin": round(who.requests_per_min, 1),
                "distinctUsers": who.distinct_users,
                "capPct": cap_pct,
            }
            if allowlisted(ip):
                skipped.append(MitigationAction("block_address", ip, 0.0, evidence))
                continue
            if (
                who.distinct_users >= t.DDOS_SHARED_ADDRESS_MIN_USERS
                and not flooders
                and who.requests_per_min <= who.distinct_users * t.DDOS_SHARED_PER_USER_PER_MIN
            ):
                explained = {**evidence, "sharedAddress": True, "explained": True}
                skipped.append(MitigationAction("block_address", ip, 0.0, explained))
                continue
            narrow = MitigationAction("refuse_anonymous", ip, 0.0, {**evidence, "narrow": True})
            if who.distinct_users >= t.DDOS_SHARED_ADDRESS_MIN_USERS:
                shared = {**evidence, "sharedAddress": True}
                if not flooders:
                    share = _pct(who.distinct_users, distinct_users)
                    held.append(MitigationAction("block_address", ip, share, shared))
                apply.append(narrow)
                for uid, rate in flooders:
                    share = _pct(1, distinct_users)
                    action = MitigationAction(
                        "block_user",
                        uid,
                        share,
                        {**shared, "address": ip, "userRequestsPerMin": round(rate, 1)},
                    )
                    (held if share > cap_pct else apply).append(action)
                continue
            innocent = max(0, who.distinct_users - len(flooders))
            share = _pct(innocent, distinct_users)
            action = MitigationAction(
                "block_address", ip, share, {**evidence, "blastRadiusPct": share}
            )
            if share > cap_pct:
                held.append(action)
                apply.append(narrow)
            else:
                apply.append(action)
    shadowed = tuple(a for a in apply if a.kind in shadow)
    return MitigationPlan(
        tuple(a for a in apply if a.kind not in shadow), tuple(held), tuple(skipped), shadowed
    )


def minutes_back(now: datetime, count: int, skip: int = 0) -> list[int]:
    """The ids (epoch minutes) of the ``count`` minutes before ``now``'s minute, after
    skipping ``skip``."""
    current = keys.minute_of(now)
    return [current - skip - i for i in range(1, count + 1)]


def block_doc(
    scope: BlockScope,
    subject: str,
    kind: BlockKind,
    reason: str,
    offence: int,
    now: datetime,
    until_ms: int,
    evidence: Mapping[str, Any] | None = None,
) -> BlockDoc:
    """The Firestore mirror of a block placed at ``now`` until ``until_ms`` (epoch ms)."""
    return BlockDoc(
        scope=scope,
        subject=subject,
        kind=kind,
        reason=reason,
        offence=offence,
        blocked_at=now,
        expires_at=from_ms(until_ms),
        evidence=dict(evidence or {}),
    )


# ------------------------------------------------------------------- alerts

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
        used_pct = _pct(m.used_bytes, m.max_bytes) if m.max_bytes > 0 else 0.0
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
