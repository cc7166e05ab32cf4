"""Traffic protection orchestration: shields, passes, detection and stats."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.ddos import policy
from functions.ddos.adapters import (
    ProtectionRepository,
    TrafficStore,
    block_doc,
    from_ms,
    minutes_back,
    ms,
)
from shared import thresholds as t
from shared.audit import Change
from shared.models.alerts import AlertDoc
from shared.models.ddos import (
    BlockKind,
    BlockScope,
    DDoSModeView,
    DDoSStatsView,
    DetectionDoc,
    GeoThrottleDoc,
    OffenderView,
    PanicPassDoc,
    PanicView,
    SetGeoThrottleRequest,
    ShieldView,
)
from shared.ratelimit import keys
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.policy import EndpointClass

log = logging.getLogger("pack391.ddos")

SHIELD_KIND_WALLET = "wallet"
SHIELD_KIND_AUTH = "auth"


@dataclass(frozen=True)
class DetectionReport:
    detections: list[policy.Detection]
    mitigated: bool
    blocked_sources: list[str]


class ProtectionService:
    def __init__(
        self,
        store: TrafficStore,
        repo: ProtectionRepository,
        geo: Callable[[], GeoRules] | None = None,
    ) -> None:
        self._store = store
        self._repo = repo
        self._geo = geo

    # ------------------------------------------------------------ shields

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
        )
        reason = f"{t.BRUTE_FORCE_MAX_FAILURES_COUNT} failed {kind} attempts"
        if out.user_blocked_until_ms and uid:
            self._repo.mirror_block(
                block_doc(
                    BlockScope.USER,
                    uid,
                    BlockKind.BRUTE_FORCE,
                    reason,
                    out.user_offence,
                    now,
                    out.user_blocked_until_ms,
                )
            )
        if out.ip_blocked_until_ms:
            self._repo.mirror_block(
                block_doc(
                    BlockScope.IP,
                    ip,
                    BlockKind.BRUTE_FORCE,
                    reason,
                    out.ip_offence,
                    now,
                    out.ip_blocked_until_ms,
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
        history = self._store.history(minutes_back(now, t.DDOS_BASELINE_WINDOW_MIN, skip=1))
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
        blocked: list[str] = []
        if critical:
            reason = ", ".join(sorted({d.kind.value for d in critical}))
            until = ms(now) + t.DDOS_MODE_DURATION_SEC * 1000
            self._store.extend_ddos_mode(until, reason, now)
            block_until = ms(now) + t.DDOS_SOURCE_BLOCK_SEC * 1000
            for detection in critical:
                for ip in detection.block_sources:
                    if ip in blocked:
                        continue
                    self._store.block_source(ip, block_until, now)
                    self._repo.mirror_block(
                        block_doc(
                            BlockScope.IP,
                            ip,
                            BlockKind.DDOS,
                            detection.kind.value,
                            1,
                            now,
                            block_until,
                        )
                    )
                    blocked.append(ip)
        for minute, detection in found:
            self._record(minute, detection, blocked if detection.critical else [], now)
        if found:
            log.warning("DDoS detector: %s", [(d.kind.value, d.severity.value) for _, d in found])
        return DetectionReport([d for _, d in found], bool(critical), blocked)

    def _record(
        self, minute: int, detection: policy.Detection, blocked: list[str], now: datetime
    ) -> None:
        doc = DetectionDoc(
            minute=datetime.fromtimestamp(minute * 60, now.tzinfo),
            kind=detection.kind,
            severity=detection.severity,
            evidence=detection.evidence,
            mitigated=detection.critical,
            blocked_sources=[ip for ip in blocked if ip in detection.block_sources],
            detected_at=now,
        )
        alert = None
        if detection.critical:
            alert = AlertDoc(
                source="ddos",
                kind=detection.kind.value,
                severity=detection.severity,
                title=f"DDoS: {detection.kind.value.replace('_', ' ')} (auto-mitigated)",
                evidence=detection.evidence,
                opened_at=now,
            ).to_doc()
        self._repo.record_detection(f"{minute}_{detection.kind.value}", doc, alert)

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
        hour = [*minutes_back(now, 59), keys.minute_of(now)]
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
        )
