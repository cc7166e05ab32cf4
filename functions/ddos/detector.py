"""The DDoS detector's run: judge the last minutes' traffic, plan the mitigation within
the blast-radius cap, apply it, record the detections and keep the alerts current.

Under a Firestore stall (:mod:`shared.deadline`): the counts are Redis's; what Firestore
holds is read before anything is enforced (the allowlist, when something is critical), so
a stall there stops the run (:class:`~shared.errors.DependencyUnavailable`: skipped) with
nothing blocked and DDoS mode untouched. A stall after the plan was enforced (its block
mirrors, written once the whole plan is in force; the detections; the alerts) leaves the
blocks and the mode in force in Redis, each expiring on its own, some without their
Firestore mirror or detection record; the next run re-judges the same minute, records its
detections (keyed by minute and kind: never twice), and re-blocks and mirrors a source
still flooding."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import redis

from functions.ddos import policy
from functions.ddos.ports import Alerts, ProtectionRecords, TrafficState
from shared import thresholds as t
from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.clock import from_ms, iso, ms
from shared.models.alerts import AlertSource
from shared.models.ddos import BlockDoc, BlockKind, BlockScope, DetectionDoc
from shared.ratelimit import keys
from shared.ratelimit.client import source_network

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("pack391.ddos")


@dataclass(frozen=True)
class DetectionReport:
    detections: list[policy.Detection]
    mitigated: bool
    """DDoS mode was turned on (or extended) by this run."""
    blocked_sources: list[str]
    blocked_users: list[str]
    held: list[policy.MitigationAction]


class Detector:
    """One run of the detector (``pack391_detectDDoS``, every minute)."""

    def __init__(
        self,
        store: TrafficState,
        repo: ProtectionRecords,
        alerts: Alerts,
        invalidate_blocks: Callable[[], None],
        shadow: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        """``shadow``: the mitigation action kinds that only record what they would do
        (``PACK391_DDOS_SHADOW_ACTIONS``); ``invalidate_blocks``: drop this instance's copy
        of the held blocks after a block."""
        self._store = store
        self._repo = repo
        self._alerts = alerts
        self._invalidate_blocks = invalidate_blocks
        self._shadow = shadow

    def detect(self, now: datetime) -> DetectionReport:
        """Judge the last complete minute and the current one so far; mitigate critical
        ones. Under a Firestore stall: see the module docstring."""
        current = keys.minute_of(now)
        history_minutes = policy.minutes_back(now, t.DDOS_BASELINE_WINDOW_MIN, skip=1)
        history = self._store.history(history_minutes)
        baseline = policy.baseline_of(history)
        judged = [(current - 1, self._store.minute(current - 1))]
        elapsed = now.timestamp() - current * 60
        if elapsed >= t.DDOS_PARTIAL_MINUTE_MIN_SEC:
            judged.append((current, self._store.minute(current, elapsed_fraction=elapsed / 60)))
        found: list[tuple[int, policy.Detection]] = []
        for minute, traffic in judged:
            fps = [fp for fp, _, _ in traffic.top_fingerprints]
            earlier = range(minute - t.DDOS_FINGERPRINT_HISTORY_MIN, minute)
            usual = policy.usual_shares(self._store.fingerprint_history(fps, earlier))
            for detection in policy.merge(policy.detect(traffic, baseline, usual)):
                found.append((minute, detection))

        critical = [d for _, d in found if d.critical]
        plan = self._plan(critical, judged, history_minutes, now)
        blocked, blocked_users = self._apply(plan, now)
        raised: dict[str, AlertSpec] = {}
        for minute, detection in found:
            spec = self._record(minute, detection, blocked, blocked_users, plan, now)
            if spec is not None:
                raised[spec.dedup_key] = spec  # once per kind per run
        self._update_alerts(
            list(raised.values()), {d.kind.value for d in critical}, plan, now, self._memory()
        )
        if found:
            log.warning("DDoS detector: %s", [(d.kind.value, d.severity.value) for _, d in found])
        if plan.held:
            log.error("DDoS mitigation held for a human: %s", plan.held)
        return DetectionReport(
            [d for _, d in found],
            any(a.kind == "ddos_mode" for a in plan.apply),
            blocked,
            blocked_users,
            list(plan.held),
        )

    def _memory(self) -> list[AlertSpec | AlertResolve]:
        """Redis memory alerts (enforcement and telemetry); none when Redis cannot say."""
        try:
            return policy.redis_memory_changes(self._store.memory())
        except redis.RedisError as exc:
            log.warning("Redis memory not read: %r", exc)
            return []

    def _plan(
        self,
        critical: list[policy.Detection],
        judged: list[tuple[int, policy.MinuteTraffic]],
        history_minutes: list[int],
        now: datetime,
    ) -> policy.MitigationPlan:
        """Gather what the blast-radius rules need (only when something is critical)."""
        if not critical:
            return policy.MitigationPlan((), (), ())
        candidates = {ip for d in critical for ip in d.block_sources}
        # who was behind each address, over every judged minute (the flood may be in the
        # last complete one, the current one, or both): the most users seen, and each
        # user's highest rate
        rates: dict[str, float] = {}
        counts: dict[str, int] = {}
        user_rates: dict[str, dict[str, float]] = {}
        for minute, seen in judged:
            for ip, n in seen.top_ips:
                if ip in candidates:
                    rates[ip] = max(rates.get(ip, 0.0), seen.per_min(n))
            found = self._store.address_users(
                minute, candidates, t.DDOS_USERS_PER_ADDRESS_TOP_COUNT
            )
            for ip, (count, top) in found.items():
                counts[ip] = max(counts.get(ip, 0), count)
                per_user = user_rates.setdefault(ip, {})
                for uid, n in top:
                    per_user[uid] = max(per_user.get(uid, 0.0), seen.per_min(n))
        addresses = {
            ip: policy.AddressUsers(
                ip,
                rates.get(ip, 0.0),
                counts.get(ip, 0),
                sorted(user_rates.get(ip, {}).items(), key=lambda item: -item[1]),
            )
            for ip in candidates
        }
        networks = [ipaddress.ip_network(e.entry) for e in self._repo.allowlist()]

        distinct_users = max(self._store.distinct_users(minute) for minute, _ in judged)
        tokenless = 0.0
        for minute, _ in judged:
            fields = self._store.counters([minute])
            if fields.get("all"):
                share = fields.get("door:preauth", 0) * 100 / fields["all"]
                tokenless = max(tokenless, share)
        mode_pct = policy.ddos_mode_blast_radius_pct(*self._store.over_mode_users(history_minutes))
        return policy.plan_mitigation(
            critical,
            addresses,
            distinct_users,
            mode_pct,
            lambda ip: _allowlisted(ip, networks),
            shadow=frozenset(self._shadow()),
            tokenless_share_pct=tokenless,
            baseline_minutes=len(self._store.history(history_minutes)),
        )

    def _apply(self, plan: policy.MitigationPlan, now: datetime) -> tuple[list[str], list[str]]:
        blocked: list[str] = []
        blocked_users: list[str] = []
        mirrors: list[BlockDoc] = []
        refused = False
        block_until = ms(now) + t.DDOS_SOURCE_BLOCK_SEC * 1000
        for action in plan.apply:
            if action.kind == "ddos_mode":
                reason = ", ".join(action.evidence.get("detections", []))
                until = ms(now) + t.DDOS_MODE_DURATION_SEC * 1000
                self._store.extend_ddos_mode(until, reason, now, action.evidence)
                continue
            if action.kind == "anon_lockdown":
                self._store.extend_lockdown(ms(now) + t.ANON_LOCKDOWN_SEC * 1000, now)
                refused = True
                continue
            if action.kind == "refuse_anonymous":
                self._store.refuse_anonymous(action.target, ms(now) + t.ANON_REFUSE_SEC * 1000, now)
                refused = True
                continue
            scope = BlockScope.IP if action.kind == "block_address" else BlockScope.USER
            if scope is BlockScope.IP:
                self._store.block_source(action.target, block_until, now)
                blocked.append(action.target)
            else:
                self._store.block_user(action.target, block_until, now)
                blocked_users.append(action.target)
            mirrors.append(
                policy.block_doc(
                    scope,
                    action.target,
                    BlockKind.DDOS,
                    str(action.evidence.get("detection", "ddos")),
                    1,
                    now,
                    block_until,
                    action.evidence,
                )
            )
        if blocked or refused:
            self._invalidate_blocks()
        for mirror in mirrors:  # once the whole plan is in force: see the module docstring
            self._repo.mirror_block(mirror)
        return blocked, blocked_users

    def _record(
        self,
        minute: int,
        detection: policy.Detection,
        blocked: list[str],
        blocked_users: list[str],
        plan: policy.MitigationPlan,
        now: datetime,
    ) -> AlertSpec | None:
        """Record a detection; the alert it raises when critical."""
        held = policy.not_taken(detection, plan)
        applied = [a for a in plan.apply if a.evidence.get("detection") == detection.kind.value]
        mode_on = any(a.kind == "ddos_mode" for a in plan.apply)
        lockdown_on = any(a.kind == "anon_lockdown" for a in plan.apply)
        global_answer = detection.kind in policy.GLOBAL_KINDS and (mode_on or lockdown_on)
        doc = DetectionDoc(
            minute=datetime.fromtimestamp(minute * 60, now.tzinfo),
            kind=detection.kind,
            severity=detection.severity,
            evidence=detection.evidence,
            mitigated=detection.critical and (global_answer or bool(applied)),
            blocked_sources=[ip for ip in blocked if ip in detection.block_sources],
            blocked_users=[a.target for a in applied if a.kind == "block_user"],
            held=held,
            detected_at=now,
        )
        self._repo.record_detection(f"{minute}_{detection.kind.value}", doc)
        if not detection.critical:
            return None
        explained = {a.target for a in plan.skipped if a.evidence.get("explained")}
        if detection.block_sources and set(detection.block_sources) <= explained:
            return None  # busy shared addresses their users explain: recorded, no alert
        return policy.detection_alert(
            detection,
            doc.mitigated,
            len(held),
            {
                **detection.evidence,
                "ddosMode": mode_on,
                "lockdown": lockdown_on,
                "blockedSources": doc.blocked_sources,
                "blockedUsers": doc.blocked_users,
                "actions": [
                    {"action": a.kind, "target": a.target, "evidence": a.evidence}
                    for a in plan.apply
                    if a.kind in ("ddos_mode", "anon_lockdown") or a in applied
                ],
                "held": held,
            },
        )

    def _update_alerts(
        self,
        raised: list[AlertSpec],
        critical_kinds: set[str],
        plan: policy.MitigationPlan,
        now: datetime,
        memory: list[AlertSpec | AlertResolve] | None = None,
    ) -> None:
        """Raise this run's alerts (DDoS mode's when this run turned it on or extended it,
        Redis memory's); resolve the ones whose condition cleared
        (:func:`policy.cleared_alerts`, Redis memory back under its threshold)."""
        changes: list[AlertChange] = list(raised)
        mode = self._store.ddos_mode()
        for action in plan.apply:
            if action.kind == "ddos_mode" and mode is not None:
                changes.append(
                    policy.mode_alert(mode.reason, iso(from_ms(mode.until_ms)), action.evidence)
                )
        active = [a.dedup_key for _, a in self._alerts.active_of(AlertSource.DDOS) if a.dedup_key]
        changes += policy.cleared_alerts(active, critical_kinds, mode is not None)
        changes += [
            c for c in memory or [] if isinstance(c, AlertSpec) or c.dedup_key in set(active)
        ]
        if changes:
            self._alerts.apply(changes, now)


def _allowlisted(ip: str, networks: list[IPNetwork]) -> bool:
    """A source key (an IPv4 address or an IPv6 /64) is allowlisted when an entry covers
    it (an entry inside a /64 does not allowlist the whole /64)."""
    source = source_network(ip)
    if source is None:
        return False
    return any(source.version == n.version and source.subnet_of(n) for n in networks)  # type: ignore[arg-type]
