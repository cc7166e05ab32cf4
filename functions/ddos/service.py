"""Traffic protection orchestration: one service for the edges, made of the shields and
passes (:mod:`functions.ddos.shields`), the detector (:mod:`functions.ddos.detector`), and
the operators' actions and the stats read here."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from functions.ddos import policy
from functions.ddos.detector import DetectionReport, Detector
from functions.ddos.ports import Alerts, Invalidates, ProtectionRecords, TrafficState
from functions.ddos.shields import Shields
from shared import thresholds as t
from shared.audit import Change
from shared.auth import Caller
from shared.clock import from_ms
from shared.models.ddos import (
    AllowlistResult,
    BlockScope,
    DDoSModeView,
    DDoSStatsView,
    GeoThrottleDoc,
    LiftBlockRequest,
    LiftBlockResult,
    LiftScope,
    OffenderView,
    PanicView,
    SetAllowlistRequest,
    SetGeoThrottleRequest,
    ShieldView,
)
from shared.ratelimit import keys
from shared.ratelimit.client import DEFAULT_IPV6_PREFIX, source_key
from shared.ratelimit.policy import EndpointClass

SHIELD_KIND_WALLET = "wallet"
SHIELD_KIND_AUTH = "auth"


class ProtectionService:
    def __init__(
        self,
        store: TrafficState,
        repo: ProtectionRecords,
        alerts: Alerts,
        geo: Callable[[], Invalidates] | None = None,
        blocked: Callable[[], Invalidates] | None = None,
        shadow: Callable[[], Iterable[str]] = tuple,
        ipv6_prefix: Callable[[], int] = lambda: DEFAULT_IPV6_PREFIX,
    ) -> None:
        """``shadow``: the mitigation action kinds that only record what they would do
        (``PACK391_DDOS_SHADOW_ACTIONS``); ``geo``, ``blocked``: this instance's caches of
        the geo rules and of the held blocks, dropped when an operator changes them."""
        self._ipv6_prefix = ipv6_prefix
        self._store = store
        self._repo = repo
        self._alerts = alerts
        self._geo = geo
        self._blocked = blocked
        self._shields = Shields(store, repo, alerts)
        self._detector = Detector(store, repo, alerts, self._invalidate_blocks, shadow)

    # ------------------------------------------------- shields, passes, detection

    def record_server_failure(
        self, kind: str, uid: str | None, ip: str, now: datetime, account: str | None = None
    ) -> ShieldView:
        """A failure a server saw (:meth:`Shields.record_server_failure`)."""
        return self._shields.record_server_failure(kind, uid, ip, now, account)

    def record_attempt(
        self, kind: str, uid: str | None, ip: str, failure: bool, now: datetime
    ) -> ShieldView:
        """A client's own report of an attempt (:meth:`Shields.record_attempt`)."""
        return self._shields.record_attempt(kind, uid, ip, failure, now)

    def panic_pass(self, caller: Caller, now: datetime, min_age_sec: int) -> PanicView:
        """A priority-lane pass for an established account (:meth:`Shields.panic_pass`)."""
        return self._shields.panic_pass(caller, now, min_age_sec)

    def detect(self, now: datetime) -> DetectionReport:
        """One detector run (:meth:`Detector.detect`)."""
        return self._detector.detect(now)

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
