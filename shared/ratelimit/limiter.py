"""The rate limiter: one pipelined Redis round trip per decision, a declared failure mode
per class, and the detector's counters batched per instance
(:mod:`shared.ratelimit.counters`). The front door's count and checks before a call are
:mod:`shared.ratelimit.door`'s.

A decision is one script per hash slot it needs (:mod:`shared.ratelimit.slots`: the
user's, the address's, the country's), sent in one pipeline: one round trip on one Redis,
and on a Redis Cluster one per shard involved, sent before any answer is read. No script
touches two slots, so the same code runs on both (``REDIS_URL``: ``redis://`` or
``redis+cluster://``, :mod:`shared.redis`). DDoS mode is read from the instance's copy of
the global state, refreshed about once a second with the block lists, and so are the error
budgets' actions: a request of a class the ``shed`` action sheds is refused before any
script runs (no round trip), one it would shed in shadow mode is counted (batched)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import redis

from shared.errors import BackendUnavailable
from shared.models.slo import SloAction
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.counters import CounterBuffer, FlushResult
from shared.ratelimit.door import BlockedAddresses, Credential, Door, DoorVerdict
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.policy import (
    ClassPolicy,
    EndpointClass,
    FailMode,
    Limits,
    Reason,
    ShedVerdict,
    class_policy,
    limits_for,
    near_limit,
    over_ddos_limit,
    shed_verdict,
)
from shared.ratelimit.slots import (
    US_PER_SEC,
    RateDecision,
    Slot,
    Who,
    calls,
    combine,
    plan,
    refunds,
    sections,
)
from shared.redis import LUA_DIR, is_cluster, lua_script, run_scripts
from shared.slo.actions import ShadowTally
from shared.thresholds import (
    ADDRESS_QUOTA_BASE_USERS,
    ADDRESS_QUOTA_MAX_USERS,
    RATE_LIMIT_KEY_GRACE_SEC,
    RATE_LIMIT_UNAVAILABLE_RETRY_SEC,
    SLO_SHED_RETRY_SEC,
)

__all__ = [
    "US_PER_SEC",
    "Credential",
    "DoorVerdict",
    "RateDecision",
    "RateLimiter",
    "Subject",
]
"""``Credential`` and ``DoorVerdict`` are the front door's (:mod:`shared.ratelimit.door`)."""

log = logging.getLogger("pack391.ratelimit")

_DECIDE = LUA_DIR / "rate_slot.lua"
_REFUND = LUA_DIR / "rate_refund.lua"
_LOG_EVERY_SEC = 10.0


class Shedding:
    """The error budgets' ``shed`` action in the limiter: from the instance's copy of the
    snapshot (:meth:`shared.ratelimit.door.BlockedAddresses.slo_actions`, no round trip),
    a request of a shed class is refused before any script runs; one it would shed in
    shadow mode is counted once in :attr:`shadow` (flushed with the traffic counters)."""

    def __init__(self, blocked: BlockedAddresses, geo: GeoRules) -> None:
        self._blocked = blocked
        self._geo = geo
        self.shadow = ShadowTally(SloAction.SHED)

    def check(
        self, endpoint_class: EndpointClass, country: str | None, now: datetime, principal: bool
    ) -> RateDecision | None:
        """The refusal when ``shed`` is enforced for the class (``principal``: staff or a
        trusted service, never shed); None otherwise (counted when shadowed)."""
        snapshot = self._blocked.slo_actions(int(now.timestamp() * 1000))
        verdict = shed_verdict(snapshot, endpoint_class, principal)
        if verdict is ShedVerdict.SHADOW:
            self.shadow.add(now)
        if verdict is not ShedVerdict.ENFORCE:
            return None
        limits = limits_for(class_policy(endpoint_class), self._geo.get(country))
        return RateDecision(
            allowed=False,
            remaining=0,
            retry_after_sec=SLO_SHED_RETRY_SEC,
            reset_sec=0.0,
            reason=Reason.SHED,
            limit=limits.limit,
            endpoint_class=endpoint_class,
        )


@dataclass(frozen=True)
class Subject:
    """Who a decision is about."""

    uid: str | None
    client: ClientInfo
    door_counted: bool = False
    """The request was already counted as a source at the front door (:meth:`RateLimiter.door`)."""
    established: bool = False
    """The user counts as established (:func:`shared.auth.is_established`): it is counted
    among the users behind its address, which sizes the address's quota and decides
    whether the address is shared."""


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        geo: GeoRules,
        shadow_classes: frozenset[str] = frozenset(),
        counters: CounterBuffer | None = None,
        telemetry: redis.Redis | None = None,
        key_grace_sec: float = RATE_LIMIT_KEY_GRACE_SEC,
    ) -> None:
        """``telemetry``: where the traffic counters go (default: ``client``).
        ``key_grace_sec``: how long a bucket's key outlives its TAT
        (:data:`shared.thresholds.RATE_LIMIT_KEY_GRACE_SEC`)."""
        self._redis = client
        self._telemetry = telemetry if telemetry is not None else client
        self._script = lua_script(_DECIDE, client)
        self._refund = lua_script(_REFUND, client)
        self._together = not is_cluster(client)
        """One Redis: a decision's sections in one script call (all or nothing); a
        cluster: one call per section, in one pipeline."""
        self._grace = key_grace_sec
        self._geo = geo
        self._shadow = shadow_classes
        self._counters = counters if counters is not None else CounterBuffer()
        self._door = Door(client, self._counters)
        self.blocked = self._door.blocked
        """This instance's copy of the block lists (the front door's)."""
        self.preauth = self._door.preauth
        """The pre-auth buckets of this process (the front door's)."""
        self.shedding = Shedding(self.blocked, geo)
        """The budgets' ``shed`` action (its shadow counts flush with the counters)."""
        self._established: dict[str, dict[int, int]] = {}
        """Address -> {minute: established users seen behind it then, fleet-wide}, as the
        counters' flushes read them back (the two newest minutes)."""
        self._lock = threading.Lock()
        self._failures_total = 0
        self._last_log = 0.0

    @property
    def failures_total(self) -> int:
        """Redis failures this instance has seen (for its logs and tests)."""
        return self._failures_total

    def door(
        self, client: ClientInfo, now: datetime, credential: Credential = Credential.USER
    ) -> DoorVerdict:
        """Count one request at the front door and say whether it may go on
        (:meth:`shared.ratelimit.door.Door.check`); no Redis round trip of its own."""
        verdict = self._door.check(client, now, credential)
        self.flush_counters(only_if_due=True)
        return verdict

    def charge_preauth(self, client: ClientInfo, now: datetime) -> DoorVerdict:
        """A request with a valid token but the wrong role for its function: it draws from
        the address's pre-auth bucket too (counted; no Redis round trip)."""
        return self._door.charge_preauth(client, now)

    def decide(
        self,
        endpoint_class: EndpointClass,
        subject: Subject,
        now: datetime,
        *,
        staff: bool = False,
        service: bool = False,
    ) -> RateDecision:
        """Count one request of ``endpoint_class`` by ``subject`` and decide it.
        ``staff``: an ops or admin caller of an ops or admin function, decided in the
        ``staff`` class's own per-user bucket, exempt from IP blocks and DDoS mode.
        ``service``: a trusted service's own call, in the ``service`` class's bucket of
        its principal, the same way (never its egress address's). Neither is ever shed;
        another request of a class the budgets shed is refused first (:class:`Shedding`)."""
        shed = self.shedding.check(endpoint_class, subject.client.country, now, staff or service)
        if shed is not None:
            self._count(shed, subject, now)
            self.flush_counters(only_if_due=True)
            return shed
        policy, limits, plan = self._prepare(endpoint_class, subject, now, staff, service)
        endpoint_class = policy.endpoint_class
        try:
            raw = run_scripts(
                self._redis, calls(self._script, plan, now, self._together, self._grace)
            )
            answers = sections(raw)
            decision = combine(plan, answers, endpoint_class, endpoint_class.value in self._shadow)
            given_back = refunds(plan, answers, decision, self._refund)
            if given_back:
                run_scripts(self._redis, given_back)
        except redis.RedisError as exc:
            decision = self._redis_failed(policy, limits.limit, exc)
            self._count(decision, subject, now, redis_failed=True)
            return decision
        self._count(decision, subject, now)
        self.flush_counters(only_if_due=True)
        return decision

    def plan(
        self,
        endpoint_class: EndpointClass,
        subject: Subject,
        now: datetime,
        *,
        staff: bool = False,
        service: bool = False,
    ) -> list[Slot]:
        """The sections :meth:`decide` would send for this request (benchmarks and tests
        count the slots, keys and round trips of a decision with it)."""
        return self._prepare(endpoint_class, subject, now, staff, service)[2]

    def _prepare(
        self, endpoint_class: EndpointClass, subject: Subject, now: datetime, staff: bool,
        service: bool,
    ) -> tuple[ClassPolicy, Limits, list[Slot]]:  # fmt: skip
        """The class's policy, its limits for the subject's country, and the sections."""
        endpoint_class, principal_only = _effective_class(endpoint_class, subject, staff, service)
        policy = class_policy(endpoint_class)
        limits = limits_for(policy, self._geo.get(subject.client.country))
        return policy, limits, self._plan(policy, limits, subject, now, principal_only)

    def _plan(
        self,
        policy: ClassPolicy,
        limits: Limits,
        subject: Subject,
        now: datetime,
        principal_only: bool,
    ) -> list[Slot]:
        """:func:`shared.ratelimit.slots.plan` with this instance's copies: DDoS mode
        (:meth:`shared.ratelimit.door.BlockedAddresses.ddos_mode`) and the established
        users behind the address (:meth:`address_users`)."""
        ddos = not principal_only and self.blocked.ddos_mode(int(now.timestamp() * 1000))
        users = self.address_users(subject.client.ip, keys.minute_of(now))
        who = Who(subject.uid, subject.client.ip, subject.client.country)
        return plan(
            policy,
            limits,
            who,
            principal_only=principal_only,
            ddos=ddos,
            address_users=users,
        )

    def _count(
        self, decision: RateDecision, subject: Subject, now: datetime, redis_failed: bool = False
    ) -> None:
        cls = decision.endpoint_class.value
        names = [f"req:{cls}"]
        if subject.client.country:
            names.append(f"cc:{subject.client.country}")
        if redis_failed:
            names.append("redis_fail")
        elif not decision.allowed:
            names += [f"den:{cls}", f"why:{decision.reason.value}"]
        elif decision.reason is Reason.SHADOW_LIMITED:
            names.append(f"shadow:{cls}")
        elif decision.reason is Reason.PANIC_PASS:
            names.append("pass")
        elif near_limit(decision.remaining, decision.limit):
            names.append(f"near:{cls}")
        over_ddos = decision.allowed and over_ddos_limit(decision.remaining, decision.limit)
        if over_ddos:
            names.append(f"overddos:{cls}")
        principal_only = decision.endpoint_class in (EndpointClass.STAFF, EndpointClass.SERVICE)
        self._counters.record(
            keys.minute_of(now),
            names,
            subject.client.ip,
            subject.client.fingerprint,
            source=not subject.door_counted and not principal_only,
            uid=None if principal_only else subject.uid,
            established=subject.established,
            over_ddos=over_ddos,
        )

    def flush_counters(self, only_if_due: bool = False) -> None:
        """Write the buffered traffic counters to Redis (see :mod:`shared.ratelimit.counters`).
        A Redis failure keeps them buffered for the next try."""
        if only_if_due and not self._counters.due():
            return
        self.shedding.shadow.flush(self._redis)  # where the evaluator reads them; never raises
        try:
            result = self._counters.flush(self._telemetry, self._redis)
        except redis.RedisError as exc:
            log.warning("traffic counters kept for the next flush: %r", exc)
            return
        self._door.note_flush(result)
        self._note_established(result)

    def address_users(self, ip: str, minute: int) -> int:
        """How many users' limits ``ip``'s own bucket holds: ``ADDRESS_QUOTA_BASE_USERS``
        plus the established users seen behind it in this minute or the last (this
        instance's copy, read back by the counters' flush), at most
        ``ADDRESS_QUOTA_MAX_USERS``."""
        seen = self._established.get(ip)
        behind = max((n for m, n in seen.items() if m >= minute - 1), default=0) if seen else 0
        return min(ADDRESS_QUOTA_MAX_USERS, ADDRESS_QUOTA_BASE_USERS + behind)

    def _note_established(self, result: FlushResult) -> None:
        if not result.established:
            return
        newest = max(m for m, _ in result.established)
        with self._lock:
            kept: dict[str, dict[int, int]] = {}
            for ip, per_minute in self._established.items():
                recent = {m: n for m, n in per_minute.items() if m >= newest - 1}
                if recent:
                    kept[ip] = recent
            for (minute, ip), n in result.established.items():
                if minute >= newest - 1:
                    per_minute = kept.setdefault(ip, {})
                    per_minute[minute] = max(n, per_minute.get(minute, 0))
            self._established = kept

    def _redis_failed(self, policy: ClassPolicy, limit: int, exc: redis.RedisError) -> RateDecision:
        with self._lock:
            self._failures_total += 1
            now = time.monotonic()
            should_log = now - self._last_log >= _LOG_EVERY_SEC
            if should_log:
                self._last_log = now
        if should_log:
            log.error(
                "Redis unavailable for rate limiting (%d failures so far); %s fails %s: %r",
                self._failures_total,
                policy.endpoint_class.value,
                policy.fail_mode.value,
                exc,
            )
        if policy.fail_mode is FailMode.CLOSED:
            raise BackendUnavailable(
                f"{policy.endpoint_class.value} requests are refused while rate limiting is "
                "unavailable; try again shortly",
                endpointClass=policy.endpoint_class.value,
                retryAfterSec=RATE_LIMIT_UNAVAILABLE_RETRY_SEC,
                dependency="redis",
            ) from exc
        return RateDecision(
            allowed=True,
            remaining=limit,
            retry_after_sec=0.0,
            reset_sec=0.0,
            reason=Reason.REDIS_UNAVAILABLE,
            limit=limit,
            endpoint_class=policy.endpoint_class,
        )


def _effective_class(
    endpoint_class: EndpointClass, subject: Subject, staff: bool, service: bool
) -> tuple[EndpointClass, bool]:
    """The class a request is decided in, and whether it is a trusted principal's (an ops
    or admin caller of an ops or admin function: ``staff``; a trusted service's own call:
    ``service``), which is counted in its own bucket only. Both need a signed-in caller."""
    if staff and subject.uid:
        return EndpointClass.STAFF, True
    if service and subject.uid:
        return EndpointClass.SERVICE, True
    return endpoint_class, False
