"""Traffic protection orchestration: shields, passes, detection and stats."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.ddos import policy
from functions.ddos.adapters import (
    ProtectionRepository,
    TrafficStore,
)
from shared import thresholds as t
from shared.alerts.policy import AlertChange, AlertSpec
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.clock import from_ms, iso, ms
from shared.models.alerts import AlertSource
from shared.models.ddos import (
    AllowlistResult,
    BlockKind,
    BlockScope,
    DDoSModeView,
    DDoSStatsView,
    DetectionDoc,
    GeoThrottleDoc,
    LiftBlockRequest,
    LiftBlockResult,
    LiftScope,
    OffenderView,
    PanicPassDoc,
    PanicView,
    SetAllowlistRequest,
    SetGeoThrottleRequest,
    ShieldView,
)
from shared.ratelimit import keys
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import BlockedAddresses
from shared.ratelimit.policy import EndpointClass

log = logging.getLogger("pack391.ddos")

SHIELD_KIND_WALLET = "wallet"
SHIELD_KIND_AUTH = "auth"


@dataclass(frozen=True)
class DetectionReport:
    detections: list[policy.Detection]
    mitigated: bool
    """DDoS mode was turned on (or extended) by this run."""
    blocked_sources: list[str]
    blocked_users: list[str]
    held: list[policy.MitigationAction]


class ProtectionService:
    def __init__(
        self,
        store: TrafficStore,
        repo: ProtectionRepository,
        alerts: AlertStore,
        geo: Callable[[], GeoRules] | None = None,
        blocked: Callable[[], BlockedAddresses] | None = None,
    ) -> None:
        self._store = store
        self._repo = repo
        self._alerts = alerts
        self._geo = geo
        self._blocked = blocked

    # ------------------------------------------------------------ shields

    def record_server_failure(
        self, kind: str, uid: str | None, ip: str, now: datetime
    ) -> ShieldView:
        """For server-side flows (a wrong PIN checked by the wallet service, a failed password
        seen by the auth backend): count a failure in a window of its own that no client
        call can clear (a reported success clears only the client-reported window). Blocks
        are the same blocks: five server-seen failures block the user and the address."""
        return self.record_attempt(f"{kind}:server", uid, ip, True, now)

    def record_attempt(
        self, kind: str, uid: str | None, ip: str, failure: bool, now: datetime
    ) -> ShieldView:
        """Count one wallet/auth attempt of ``uid`` from ``ip``; block on too many failures."""
        out = self._store.shield_attempt(
            kind,
            uid,
            ip,
            failure,
            now,
            window_ms=t.BRUTE_FORCE_WINDOW_SEC * 1000,
            max_failures=t.BRUTE_FORCE_MAX_FAILURES_COUNT,
            block_ms=[sec * 1000 for sec in t.BRUTE_FORCE_BLOCK_SEC],
            offence_memory_ms=t.BRUTE_FORCE_OFFENCE_MEMORY_SEC * 1000,
            success_resets=t.BRUTE_FORCE_SUCCESS_RESETS_PER_WINDOW,
        )
        reason = f"{t.BRUTE_FORCE_MAX_FAILURES_COUNT} failed {kind} attempts"
        evidence = {
            "kind": kind,
            "failures": t.BRUTE_FORCE_MAX_FAILURES_COUNT,
            "windowSec": t.BRUTE_FORCE_WINDOW_SEC,
        }
        for scope, subject, until_ms, offence in (
            (BlockScope.USER, uid, out.user_blocked_until_ms, out.user_offence),
            (BlockScope.IP, ip, out.ip_blocked_until_ms, out.ip_offence),
        ):
            if until_ms and subject:
                self._repo.mirror_block(
                    policy.block_doc(
                        scope,
                        subject,
                        BlockKind.BRUTE_FORCE,
                        reason,
                        offence,
                        now,
                        until_ms,
                        {**evidence, "offence": offence, "blockSec": (until_ms - ms(now)) // 1000},
                    )
                )
        return ShieldView(
            blocked=out.blocked,
            attempts_left=max(0, out.attempts_left),
            blocked_until=from_ms(out.blocked_until_ms) if out.blocked_until_ms else None,
        )

    # ------------------------------------------------------- panic passes

    def panic_pass(self, uid: str, now: datetime) -> PanicView:
        out = self._store.grant_pass(
            uid, now, t.PANIC_PASS_DURATION_SEC * 1000, t.PANIC_PASSES_PER_DAY_COUNT
        )
        if out.newly_granted:
            self._repo.record_pass(
                PanicPassDoc(uid=uid, granted_at=now, expires_at=from_ms(out.expires_at_ms))
            )
        return PanicView(
            granted=out.granted,
            expires_at=from_ms(out.expires_at_ms) if out.granted else None,
            passes_left_today=out.passes_left,
        )

    # ----------------------------------------------------------- detection

    def detect(self, now: datetime) -> DetectionReport:
        """Judge the last complete minute and the current one so far; mitigate critical ones."""
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
        self._update_alerts(list(raised.values()), {d.kind.value for d in critical}, plan, now)
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

        def allowlisted(ip: str) -> bool:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                return False
            return any(address.version == n.version and address in n for n in networks)

        distinct_users = max(self._store.distinct_users(minute) for minute, _ in judged)
        mode_pct = policy.ddos_mode_blast_radius_pct(self._store.counters(history_minutes))
        return policy.plan_mitigation(critical, addresses, distinct_users, mode_pct, allowlisted)

    def _apply(self, plan: policy.MitigationPlan, now: datetime) -> tuple[list[str], list[str]]:
        blocked: list[str] = []
        blocked_users: list[str] = []
        block_until = ms(now) + t.DDOS_SOURCE_BLOCK_SEC * 1000
        for action in plan.apply:
            if action.kind == "ddos_mode":
                reason = ", ".join(action.evidence.get("detections", []))
                until = ms(now) + t.DDOS_MODE_DURATION_SEC * 1000
                self._store.extend_ddos_mode(until, reason, now, action.evidence)
                continue
            scope = BlockScope.IP if action.kind == "block_address" else BlockScope.USER
            if scope is BlockScope.IP:
                self._store.block_source(action.target, block_until, now)
                blocked.append(action.target)
            else:
                self._store.block_user(action.target, block_until, now)
                blocked_users.append(action.target)
            self._repo.mirror_block(
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
        if blocked:
            self._invalidate_blocks()
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
        held = [
            {
                "action": a.kind,
                "target": a.target,
                "blastRadiusPct": a.blast_radius_pct,
                "evidence": a.evidence,
                "why": "allowlisted" if a in plan.skipped else "blast radius over the cap",
            }
            for a in (*plan.held, *plan.skipped)
            if detection.critical
            and (a.kind == "ddos_mode" or a.evidence.get("detection") == detection.kind.value)
        ]
        applied = [a for a in plan.apply if a.evidence.get("detection") == detection.kind.value]
        mode_on = any(a.kind == "ddos_mode" for a in plan.apply)
        doc = DetectionDoc(
            minute=datetime.fromtimestamp(minute * 60, now.tzinfo),
            kind=detection.kind,
            severity=detection.severity,
            evidence=detection.evidence,
            mitigated=detection.critical and (mode_on or bool(applied)),
            blocked_sources=[ip for ip in blocked if ip in detection.block_sources],
            blocked_users=[a.target for a in applied if a.kind == "block_user"],
            held=held,
            detected_at=now,
        )
        self._repo.record_detection(f"{minute}_{detection.kind.value}", doc)
        if not detection.critical:
            return None
        return policy.detection_alert(
            detection,
            doc.mitigated,
            len(held),
            {
                **detection.evidence,
                "ddosMode": mode_on,
                "blockedSources": doc.blocked_sources,
                "blockedUsers": doc.blocked_users,
                "actions": [
                    {"action": a.kind, "target": a.target, "evidence": a.evidence}
                    for a in plan.apply
                    if a.kind == "ddos_mode" or a in applied
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
    ) -> None:
        """Raise this run's alerts (DDoS mode's when this run turned it on or extended it);
        resolve the ones whose condition cleared (:func:`policy.cleared_alerts`)."""
        changes: list[AlertChange] = list(raised)
        mode = self._store.ddos_mode()
        for action in plan.apply:
            if action.kind == "ddos_mode" and mode is not None:
                changes.append(
                    policy.mode_alert(mode.reason, iso(from_ms(mode.until_ms)), action.evidence)
                )
        active = [a.dedup_key for _, a in self._alerts.active_of(AlertSource.DDOS) if a.dedup_key]
        changes += policy.cleared_alerts(active, critical_kinds, mode is not None)
        if changes:
            self._alerts.apply(changes, now)

    # ---------------------------------------------------------- operators

    def lift(self, req: LiftBlockRequest, change: Change) -> LiftBlockResult:
        """Lift a block (or DDoS mode) now, audited; mirrors end too."""
        if req.scope is LiftScope.DDOS_MODE:
            mode = self._store.ddos_mode()
            ended = self._store.end_ddos_mode()
            self._alerts.resolve(
                policy.MODE_ALERT_KEY,
                change.now,
                by=change.actor_uid,
                reason=f"DDoS mode lifted by {change.actor_uid}: {change.reason or 'no reason'}",
            )
            self._repo.audit_only(
                change,
                "redis:ddos_mode",
                before=None if mode is None else {"untilMs": mode.until_ms, "reason": mode.reason},
                after=None,
            )
            return LiftBlockResult(
                scope=req.scope,
                subject=None,
                lifted=["ddos_mode"] if ended else [],
                mirrors_updated=0,
            )
        subject = req.subject or ""
        lifted = self._store.lift(req.scope.value, subject)
        mirrors = self._repo.mark_lifted(BlockScope(req.scope.value), subject, change)
        self._invalidate_blocks()
        return LiftBlockResult(
            scope=req.scope, subject=subject, lifted=lifted, mirrors_updated=mirrors
        )

    def set_allowlist(self, req: SetAllowlistRequest, change: Change) -> AllowlistResult:
        changed = self._repo.set_allowlisted(req.entry, req.action == "add", change)
        lifted: list[str] = []
        network = ipaddress.ip_network(req.entry)
        if req.action == "add" and network.num_addresses == 1:
            address = str(network.network_address)
            if "ddos" in self._store.lift("ip", address):
                lifted.append(f"ddos:ip:{address}")
                self._repo.mark_lifted(BlockScope.IP, address, change)
            self._invalidate_blocks()
        return AllowlistResult(
            entry=req.entry,
            action=req.action,
            changed=changed,
            lifted=lifted,
            allowlist=self._repo.allowlist(),
        )

    def _invalidate_blocks(self) -> None:
        if self._blocked is not None:
            self._blocked().invalidate()  # this instance at once; the others within a second

    # ------------------------------------------------------------- cleanup

    def cleanup(self, now: datetime) -> int:
        return self._repo.delete_expired_blocks(now)

    # ---------------------------------------------------------------- geo

    def set_geo(self, req: SetGeoThrottleRequest, change: Change) -> GeoThrottleDoc:
        doc = self._repo.set_geo(
            GeoThrottleDoc(
                country=req.country,
                multiplier=float(req.multiplier),
                region_cap_per_min=req.region_cap_per_min,
            ),
            change,
        )
        if self._geo is not None:
            self._geo().invalidate()  # this instance at once; the others within the cache TTL
        return doc

    # --------------------------------------------------------------- stats

    def stats(self, now: datetime) -> DDoSStatsView:
        hour = [*policy.minutes_back(now, 59), keys.minute_of(now)]
        counters = self._store.counters(hour)
        mode = self._store.ddos_mode()
        current = self._store.minute(keys.minute_of(now))
        previous = self._store.minute(keys.minute_of(now) - 1)
        offenders: dict[str, int] = {}
        for ip, n in [*previous.top_ips, *current.top_ips]:
            offenders[ip] = offenders.get(ip, 0) + n
        top = sorted(offenders.items(), key=lambda item: (-item[1], item[0]))[:10]

        def per_class(prefix: str) -> dict[str, int]:
            return {c.value: counters.get(f"{prefix}:{c.value}", 0) for c in EndpointClass}

        return DDoSStatsView(
            mode=DDoSModeView(
                active=mode is not None,
                until=from_ms(mode.until_ms) if mode else None,
                reason=mode.reason if mode else None,
                evidence=mode.evidence if mode else {},
                limit_factor=t.DDOS_MODE_LIMIT_FACTOR,
            ),
            blocks=self._repo.active_blocks(now),
            top_offenders=[OffenderView(ip=ip, requests=n) for ip, n in top],
            requests_last_hour=per_class("req"),
            denied_last_hour=per_class("den"),
            denied_by_reason_last_hour={
                name.split(":", 1)[1]: n for name, n in counters.items() if name.startswith("why:")
            },
            shadow_denied_last_hour=per_class("shadow"),
            near_limit_last_hour=per_class("near"),
            panic_passes_used_last_hour=counters.get("pass", 0),
            redis_failures_last_hour=counters.get("redis_fail", 0),
            panic_activations_last_24h=self._repo.passes_since(now - timedelta(hours=24)),
            recent_detections=self._repo.recent_detections(),
            geo_throttles=self._repo.geo_rules(),
            allowlist=self._repo.allowlist(),
        )
