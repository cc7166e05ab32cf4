"""Traffic protection orchestration: shields, passes, detection and stats."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from functions.ddos import policy
from functions.ddos.adapters import (
    ProtectionRepository,
    TrafficStore,
)
from shared import thresholds as t
from shared.alerts.policy import AlertChange, AlertResolve, AlertSpec
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.auth import Caller
from shared.clock import from_ms, iso, ms
from shared.errors import FailedPrecondition
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
from shared.ratelimit.client import DEFAULT_IPV6_PREFIX, source_key, source_network
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
        shadow: Callable[[], Iterable[str]] = tuple,
        ipv6_prefix: Callable[[], int] = lambda: DEFAULT_IPV6_PREFIX,
    ) -> None:
        """``shadow``: the mitigation action kinds that only record what they would do
        (``PACK391_DDOS_SHADOW_ACTIONS``)."""
        self._shadow = shadow
        self._ipv6_prefix = ipv6_prefix
        self._store = store
        self._repo = repo
        self._alerts = alerts
        self._geo = geo
        self._blocked = blocked

    # ------------------------------------------------------------ shields

    def record_server_failure(
        self,
        kind: str,
        uid: str | None,
        ip: str,
        now: datetime,
        account: str | None = None,
    ) -> ShieldView:
        """For server-side flows (a wrong PIN checked by the wallet service, a failed password
        seen by the auth backend): count a failure in a window of its own that no client
        call can clear, and in the address's window of distinct failing accounts
        (``account``: the account the attempt was for, when there is no uid: a hash of the
        login name). Five server-seen failures block the user; failures for
        ``BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS`` distinct accounts block the address, unless it
        is shared (then the block is held for a human, with an alert)."""
        return self._attempt(
            f"{kind}:server", uid, ip, True, now, address_scope=True, account=account
        )

    def record_attempt(
        self, kind: str, uid: str | None, ip: str, failure: bool, now: datetime
    ) -> ShieldView:
        """A client's own report of a wallet/auth attempt: it feeds only the reporting
        user's window (a real attacker never reports its own failures, and one user's
        mistakes must not block everyone behind its address)."""
        return self._attempt(kind, uid, ip, failure, now, address_scope=False)

    def _attempt(
        self,
        kind: str,
        uid: str | None,
        ip: str,
        failure: bool,
        now: datetime,
        *,
        address_scope: bool,
        account: str | None = None,
    ) -> ShieldView:
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
            address_scope=address_scope,
            account=account or uid or "",
            address_min_accounts=t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS,
            address_offence_memory_ms=t.BRUTE_FORCE_ADDRESS_OFFENCE_MEMORY_SEC * 1000,
            shared_min_users=t.DDOS_SHARED_ADDRESS_MIN_USERS,
        )
        if out.address_held:
            self._alerts.apply([policy.brute_force_held_alert(kind, ip)], now)
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

    def panic_pass(self, caller: Caller, now: datetime, min_age_sec: int) -> PanicView:
        """A priority-lane pass for ``caller``, who must be an *established* account
        (:func:`shared.auth.is_established` with ``min_age_sec``): a pass is worth
        something during an attack, so it is not for throwaway accounts (anonymous, or
        signed in minutes ago), nor for staff (their own bucket exempts them from DDoS
        mode on their tools) or services (principals acting for users, never users).
        ``FAILED_PRECONDITION`` otherwise, saying why."""
        if not caller.established(now.timestamp(), min_age_sec):
            raise _not_established(caller, now, min_age_sec)
        uid = caller.uid
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

        def allowlisted(ip: str) -> bool:
            # a source key is an IPv4 address or an IPv6 /64: allowlisted when an entry
            # covers it (an entry inside a /64 does not allowlist the whole /64)
            source = source_network(ip)
            if source is None:
                return False
            return any(source.version == n.version and source.subnet_of(n) for n in networks)  # type: ignore[arg-type]

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
            allowlisted,
            shadow=frozenset(self._shadow()),
            tokenless_share_pct=tokenless,
            baseline_minutes=len(self._store.history(history_minutes)),
        )

    def _apply(self, plan: policy.MitigationPlan, now: datetime) -> tuple[list[str], list[str]]:
        blocked: list[str] = []
        blocked_users: list[str] = []
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
        if blocked or refused:
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
            if detection.critical
            and (a.kind == "ddos_mode" or a.evidence.get("detection") == detection.kind.value)
        ]
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

    # ---------------------------------------------------------- operators

    def lift(self, req: LiftBlockRequest, change: Change) -> LiftBlockResult:
        """Lift a block (or DDoS mode) now, audited; mirrors end too."""
        if req.scope is LiftScope.DDOS_MODE:
            mode = self._store.ddos_mode()
            lockdown = self._store.lockdown_until_ms()
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
                before={
                    "mode": None
                    if mode is None
                    else {"untilMs": mode.until_ms, "reason": mode.reason},
                    "lockdownUntilMs": lockdown or None,
                },
                after=None,
            )
            self._invalidate_blocks()
            return LiftBlockResult(
                scope=req.scope,
                subject=None,
                lifted=["ddos_mode"] if ended else [],
                mirrors_updated=0,
            )
        subject = req.subject or ""
        if req.scope is LiftScope.IP:
            subject = source_key(subject, self._ipv6_prefix())
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
        if req.action == "add" and (
            network.num_addresses == 1
            or (network.version == 6 and network.prefixlen <= self._ipv6_prefix())
        ):
            address = source_key(str(network), self._ipv6_prefix())
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
                lockdown_until=from_ms(lockdown)
                if (lockdown := self._store.lockdown_until_ms())
                else None,
            ),
            blocks=self._repo.active_blocks(now),
            top_offenders=[OffenderView(ip=ip, requests=n) for ip, n in top],
            requests_last_hour=per_class("req"),
            denied_last_hour=per_class("den"),
            denied_by_reason_last_hour={
                name.split(":", 1)[1]: n for name, n in counters.items() if name.startswith("why:")
            },
            bot_scores_last_hour={
                name.split(":", 1)[1]: n for name, n in counters.items() if name.startswith("bot:")
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


def _not_established(caller: Caller, now: datetime, min_age_sec: int) -> FailedPrecondition:
    """Why ``caller`` may not take a panic pass, as the answer says it."""
    min_age_min = min_age_sec // 60
    rule = (
        "panic passes are for established accounts (signed in with a credential, at least "
        f"{min_age_min} min ago: PACK391_ESTABLISHED_MIN_AGE_MIN)"
    )
    if caller.is_anonymous:
        account, why = "anonymous", "this account is anonymous: sign in with a credential first"
    elif caller.is_staff:
        account, why = (
            "staff",
            "staff accounts have their own staff bucket, exempt from DDoS mode on the ops and "
            "admin functions: a pass adds nothing there",
        )
    elif caller.is_service:
        account, why = (
            "service",
            "a service principal acts for its users and is not one: the user asks for a pass",
        )
    else:
        auth_time = caller.claims.get("auth_time")
        if isinstance(auth_time, int | float) and not isinstance(auth_time, bool):
            age_min = max(0, int((now.timestamp() - float(auth_time)) // 60))
            why = f"this account signed in {age_min} min ago; ask again later"
        else:
            why = "the ID token says nothing of when this account signed in (no auth_time)"
        account = "new"
    return FailedPrecondition(
        f"{rule}: {why}",
        reason="not_established",
        account=account,
        minAgeMin=min_age_min,
    )
