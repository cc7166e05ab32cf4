"""DDoS mitigation: what the detector does about critical detections, and within which
blast radius (pure: functions of the detections and of who was behind each address)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from functions.ddos.policy.detection import Detection
from shared import thresholds as t
from shared.clock import from_ms
from shared.models.ddos import BlockDoc, BlockKind, BlockScope, DetectionKind


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


def percent_of(part: float, whole: float) -> float:
    """``part`` as a percentage of ``whole``, to 2 decimals (0 when ``whole`` is 0)."""
    return round(part * 100 / whole, 2) if whole > 0 else 0.0


def ddos_mode_blast_radius_pct(over_users: Sequence[int], users: Sequence[int]) -> float:
    """Share of usual (baseline) established users whom DDoS mode's scaled-down limits
    would have denied: per baseline minute, the established users who used more of a
    limit than the mode allows, over the established users of that minute; the median
    minute. Measured in people with some history (not requests, not anonymous or new
    accounts, not staff), so a few accounts running near their limits do not make the
    mode look dangerous, and throwaway accounts do not count."""
    shares = [percent_of(o, u) for o, u in zip(over_users, users, strict=True) if u > 0]
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
                    share = percent_of(who.distinct_users, distinct_users)
                    held.append(MitigationAction("block_address", ip, share, shared))
                apply.append(narrow)
                for uid, rate in flooders:
                    share = percent_of(1, distinct_users)
                    action = MitigationAction(
                        "block_user",
                        uid,
                        share,
                        {**shared, "address": ip, "userRequestsPerMin": round(rate, 1)},
                    )
                    (held if share > cap_pct else apply).append(action)
                continue
            innocent = max(0, who.distinct_users - len(flooders))
            share = percent_of(innocent, distinct_users)
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


def not_taken(detection: Detection, plan: MitigationPlan) -> list[dict[str, Any]]:
    """The actions of ``plan`` about a critical ``detection`` that were not taken (held
    for a human, skipped, shadowed), each with why: what its record and alert show."""
    if not detection.critical:
        return []
    return [
        {
            "action": a.kind,
            "target": a.target,
            "blastRadiusPct": a.blast_radius_pct,
            "evidence": a.evidence,
            "why": (
                "explained by its established users"
                if a.evidence.get("explained")
                else "allowlisted"
                if a in plan.skipped
                else "shadow mode: recorded, not enforced"
                if a in plan.shadowed
                else "blast radius over the cap"
            ),
        }
        for a in (*plan.held, *plan.skipped, *plan.shadowed)
        if a.kind == "ddos_mode" or a.evidence.get("detection") == detection.kind.value
    ]
