"""What traffic protection's service needs from the outside, and what it gets back:
Protocols and the small records they exchange; nothing concrete.

- :class:`TrafficState`: the enforcement state and the traffic counters (Redis:
  :class:`functions.ddos.redis_store.TrafficStore`);
- :class:`ProtectionRecords`: the record of rules, blocks, passes and detections
  (Firestore: :class:`functions.ddos.store.ProtectionRepository`);
- :class:`Alerts`: the shared alert store (:class:`shared.alerts.store.AlertStore`);
- :class:`Invalidates`: a per-instance cache (geo rules, held blocks) to drop at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from functions.ddos.api import DDoSMode
    from functions.ddos.policy import MinuteTraffic, RedisMemory
    from shared.alerts.policy import AlertChange
    from shared.audit import Change
    from shared.models.alerts import AlertDoc, AlertSource
    from shared.models.ddos import (
        AllowlistEntryDoc,
        BlockDoc,
        BlockScope,
        DetectionDoc,
        GeoThrottleDoc,
        PanicPassDoc,
    )


@dataclass(frozen=True)
class ShieldOutcome:
    blocked: bool
    attempts_left: int
    blocked_until_ms: int
    user_blocked_until_ms: int
    ip_blocked_until_ms: int
    user_offence: int
    ip_offence: int
    address_held: bool = False
    """The address reached the distinct-accounts limit but is shared: not blocked."""


@dataclass(frozen=True)
class PassOutcome:
    granted: bool
    expires_at_ms: int
    passes_left: int
    newly_granted: bool


class TrafficState(Protocol):
    """Enforcement state (blocks, DDoS mode, shields, passes) and the per-minute traffic
    counters the detector judges."""

    def shield_attempt(
        self,
        kind: str,
        uid: str | None,
        ip: str,
        failure: bool,
        now: datetime,
        window_ms: int,
        max_failures: int,
        block_ms: Iterable[int],
        offence_memory_ms: int,
        success_resets: int = 0,
        *,
        address_scope: bool = False,
        account: str = "",
        address_min_accounts: int = 0,
        address_offence_memory_ms: int = 0,
        shared_min_users: int = 0,
    ) -> ShieldOutcome: ...

    def grant_pass(
        self, uid: str, now: datetime, duration_ms: int, per_day: int
    ) -> PassOutcome: ...

    def ddos_mode(self) -> DDoSMode | None: ...

    def extend_ddos_mode(
        self, until_ms: int, reason: str, now: datetime, evidence: dict[str, Any] | None = None
    ) -> DDoSMode: ...

    def end_ddos_mode(self) -> bool: ...

    def lockdown_until_ms(self) -> int: ...

    def extend_lockdown(self, until_ms: int, now: datetime) -> None: ...

    def block_source(self, ip: str, until_ms: int, now: datetime) -> None: ...

    def refuse_anonymous(self, ip: str, until_ms: int, now: datetime) -> None: ...

    def block_user(self, uid: str, until_ms: int, now: datetime) -> None: ...

    def lift(self, scope: str, subject: str) -> list[str]: ...

    def address_users(
        self, minute: int, ips: Iterable[str], top: int
    ) -> dict[str, tuple[int, list[tuple[str, int]]]]: ...

    def distinct_users(self, minute: int) -> int: ...

    def over_mode_users(self, minutes: Iterable[int]) -> tuple[list[int], list[int]]: ...

    def minute(
        self, minute: int, elapsed_fraction: float = 1.0, top: int = 10
    ) -> MinuteTraffic: ...

    def fingerprint_history(
        self, fingerprints: Iterable[str], minutes: Iterable[int]
    ) -> dict[str, list[float]]: ...

    def history(self, minutes: Iterable[int]) -> list[tuple[int, int]]: ...

    def memory(self) -> list[RedisMemory]: ...

    def counters(self, minutes: Iterable[int]) -> dict[str, int]: ...


class ProtectionRecords(Protocol):
    """The durable record: geo rules, block mirrors, the allowlist, pass records,
    detections, and audit entries of what operators did."""

    def set_geo(self, doc: GeoThrottleDoc, change: Change) -> GeoThrottleDoc: ...

    def geo_rules(self) -> list[GeoThrottleDoc]: ...

    def mirror_block(self, block: BlockDoc) -> None: ...

    def active_blocks(self, now: datetime, limit: int = 100) -> list[BlockDoc]: ...

    def mark_lifted(self, scope: BlockScope, subject: str, change: Change) -> int: ...

    def audit_only(self, change: Change, target: str, before: Any, after: Any) -> None: ...

    def allowlist(self) -> list[AllowlistEntryDoc]: ...

    def set_allowlisted(self, entry: str, add: bool, change: Change) -> bool: ...

    def delete_expired_blocks(self, now: datetime, page: int = 400) -> int: ...

    def record_pass(self, doc: PanicPassDoc) -> None: ...

    def passes_since(self, since: datetime) -> int: ...

    def record_detection(self, doc_id: str, detection: DetectionDoc) -> None: ...

    def recent_detections(self, limit: int = 20) -> list[DetectionDoc]: ...


class Alerts(Protocol):
    """The alerts the area raises and resolves (shared by every area)."""

    def apply(self, changes: Sequence[AlertChange], now: datetime) -> list[str | None]: ...

    def active_of(self, source: AlertSource) -> list[tuple[str, AlertDoc]]: ...

    def resolve(
        self, dedup_key: str, now: datetime, by: str = ..., reason: str = ...
    ) -> str | None: ...


class Invalidates(Protocol):
    """A cache of this instance that a change must drop at once (the other instances
    refresh theirs within their TTL)."""

    def invalidate(self) -> None: ...
