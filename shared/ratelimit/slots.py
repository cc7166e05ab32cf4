"""One rate-limit decision as scripts per hash slot, and their answers combined: pure.

A decision needs up to three slots (:mod:`shared.ratelimit.keys`): the user's (their
bucket of the class, their DDoS and brute-force blocks, their panic pass), the address's
(its bucket, its DDoS and brute-force blocks) and the country's cap. Each slot's script
(:file:`shared/lua/rate_slot.lua`) checks its own blocks and bucket and counts the request
there when they allow it; :func:`combine` turns the answers into the one decision, with
the precedence one script over all the keys had:

1. blocks: an address's DDoS block, then the user's DDoS block, then a brute-force block
   (the user's or the address's, whichever ends later);
2. buckets: the user's, then the address's, then the country cap;
3. a shadowed class's limit is reported (``shadow_limited``) and the request allowed.

A request not allowed outright (denied, or only shadow-allowed) is given back wherever a
slot counted it (:func:`refunds`), so it is counted nowhere, as before.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.commands.core import Script

from shared.ratelimit import keys
from shared.ratelimit.gcra import US_PER_MS
from shared.ratelimit.policy import ClassPolicy, EndpointClass, Limits, Reason
from shared.redis import ScriptCall
from shared.thresholds import RATE_LIMIT_KEY_GRACE_SEC, RATE_LIMIT_PERIOD_SEC

US_PER_SEC = 1_000_000

BLOCK_ORDER = (Reason.IP_BLOCK, Reason.USER_BLOCK, Reason.BRUTE_FORCE_BLOCK)
"""Blocks in the order they take precedence."""

LIMIT_ORDER = (Reason.USER_LIMIT, Reason.IP_LIMIT, Reason.COUNTRY_CAP)
"""Bucket denials in the order they take precedence."""


class SlotKind(enum.Enum):
    USER = "user"
    ADDRESS = "address"
    COUNTRY = "country"


_DENIED = {
    SlotKind.USER: Reason.USER_LIMIT.value,
    SlotKind.ADDRESS: Reason.IP_LIMIT.value,
    SlotKind.COUNTRY: Reason.COUNTRY_CAP.value,
}
"""Each kind of section's reason when its bucket denies."""


@dataclass(frozen=True)
class Slot:
    """One slot's section of a decision's script (:file:`shared/lua/rate_slot.lua`)."""

    kind: SlotKind
    keys: list[str]
    """The bucket, the block keys in order, the panic pass when looked at."""
    args: list[Any]
    """The section's arguments: limits, the denial reason, the blocks' reasons."""
    limit: int
    """The bucket's limit without a panic pass."""
    pass_limit: int
    """The bucket's limit when the user holds a panic pass (0: no pass looked at)."""

    @classmethod
    def of(
        cls,
        kind: SlotKind,
        bucket: str,
        limit: int,
        blocks: Sequence[tuple[str, str]],
        pass_limit: int = 0,
        pass_key: str = "",
    ) -> Slot:
        """The section for ``bucket`` at ``limit``, after ``blocks`` (key, reason) in
        order, looking at ``pass_key`` when ``pass_limit`` is set."""
        slot_keys = [bucket]
        args: list[Any] = [limit, pass_limit, _DENIED[kind], len(blocks)]
        for key, reason in blocks:
            slot_keys.append(key)
            args.append(reason)
        if pass_limit:
            slot_keys.append(pass_key)
        return cls(kind, slot_keys, args, limit, pass_limit)


ANSWER_SIZE = 8
"""Values per section in the script's answer."""


def calls(
    script: Script,
    slots: Sequence[Slot],
    now: datetime,
    together: bool,
    grace_sec: float = RATE_LIMIT_KEY_GRACE_SEC,
) -> list[ScriptCall]:
    """The script calls of one decision: every section in one call (``together``: one
    Redis, where a script may touch any key: one script, all or nothing), or one call per
    section (a Redis Cluster, where a script touches one slot). ``grace_sec``: how long a
    bucket's key outlives its TAT (:data:`shared.thresholds.RATE_LIMIT_KEY_GRACE_SEC`)."""
    now_us = int(now.timestamp() * US_PER_SEC)
    period_us = RATE_LIMIT_PERIOD_SEC * US_PER_SEC
    grace_ms = math.ceil(grace_sec * 1000)
    groups = [list(slots)] if together else [[slot] for slot in slots]
    return [
        ScriptCall(
            script,
            [key for slot in group for key in slot.keys],
            [
                now_us,
                period_us,
                len(group),
                grace_ms,
                *(arg for slot in group for arg in slot.args),
            ],
        )
        for group in groups
        if group
    ]


def sections(results: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Each section's answer, in order, from the calls' results (each call answers
    :data:`ANSWER_SIZE` values per section it was given)."""
    return [
        result[i : i + ANSWER_SIZE]
        for result in results
        for i in range(0, len(result), ANSWER_SIZE)
    ]


@dataclass(frozen=True)
class Answer:
    """One slot script's answer (see :file:`shared/lua/rate_slot.lua`)."""

    allowed: bool
    retry_us: int
    remaining: int
    reset_us: int
    new_tat: int
    """The TAT the script set (0: it counted nothing)."""
    passed: bool
    reason: Reason
    interval_us: int

    @classmethod
    def parse(cls, raw: Sequence[Any]) -> Answer:
        allowed, retry, remaining, reset, tat, passed, reason, interval = raw
        return cls(
            bool(int(allowed)),
            int(retry),
            int(remaining),
            int(reset),
            int(tat),
            bool(int(passed)),
            Reason(reason if isinstance(reason, str) else reason.decode()),
            int(interval),
        )


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after_sec: float
    reset_sec: float
    reason: Reason
    limit: int
    endpoint_class: EndpointClass


def _sec(us: int) -> float:
    """Microseconds as seconds, rounded up to the millisecond (never early)."""
    return math.ceil(us / US_PER_MS) / 1000


def combine(
    plan: Sequence[Slot],
    raw: Sequence[Sequence[Any]],
    endpoint_class: EndpointClass,
    shadowed: bool = False,
) -> RateDecision:
    """The decision from each slot's answer (``raw``, in ``plan``'s order)."""
    first = plan[0]  # the user's section when there is a user, else the address's
    passed = first.kind is SlotKind.USER and int(raw[0][5]) == 1
    limit = first.pass_limit if passed else first.limit
    if all(int(r[0]) == 1 for r in raw):  # every section allowed: the common case
        remaining, reset_us = -1, 0
        for slot, r in zip(plan, raw, strict=True):
            if slot.kind is not SlotKind.COUNTRY:  # the cap is not a subject's allowance
                left = int(r[2])
                remaining = left if remaining < 0 else min(remaining, left)
                reset_us = max(reset_us, int(r[3]))
        return RateDecision(
            True,
            limit if remaining < 0 else remaining,
            0.0,
            _sec(reset_us),
            Reason.PANIC_PASS if passed else Reason.OK,
            limit,
            endpoint_class,
        )
    answers = {slot.kind: Answer.parse(r) for slot, r in zip(plan, raw, strict=True)}
    reason: Reason | None = None
    retry_us = 0
    for block in BLOCK_ORDER:
        hits = [a for a in answers.values() if not a.allowed and a.reason is block]
        if hits:
            reason, retry_us = block, max(a.retry_us for a in hits)
            break
    if reason is None:
        for denial in LIMIT_ORDER:
            hit = next((a for a in answers.values() if a.reason is denial), None)
            if hit is not None:
                reason, retry_us = denial, hit.retry_us
                break
    if reason is not None:
        if shadowed and reason in LIMIT_ORDER:
            return RateDecision(
                True, 0, _sec(retry_us), 0.0, Reason.SHADOW_LIMITED, limit, endpoint_class
            )
        return RateDecision(False, 0, _sec(retry_us), 0.0, reason, limit, endpoint_class)
    raise ValueError(f"a section denied without a reason: {raw}")  # rate_slot.lua never does


def refunds(
    plan: Sequence[Slot], raw: Sequence[Sequence[Any]], decision: RateDecision, refund: Script
) -> list[ScriptCall]:
    """The counts to give back: every slot that counted a request that was not allowed
    outright (denied, or shadow-allowed) (:file:`shared/lua/rate_refund.lua`)."""
    if decision.allowed and decision.reason in (Reason.OK, Reason.PANIC_PASS):
        return []
    given_back = []
    for slot, r in zip(plan, raw, strict=True):
        answer = Answer.parse(r)
        if answer.new_tat:
            args = [answer.new_tat, answer.interval_us]
            given_back.append(ScriptCall(refund, [slot.keys[0]], args))
    return given_back


@dataclass(frozen=True)
class Who:
    """Whom a decision is about, as the keys need it."""

    uid: str | None
    ip: str
    country: str | None


def plan(
    policy: ClassPolicy,
    limits: Limits,
    who: Who,
    *,
    principal_only: bool,
    ddos: bool,
    address_users: int,
) -> list[Slot]:
    """The sections of one decision, one per hash slot it needs (see
    :file:`shared/lua/rate_slot.lua`): the user's bucket and blocks, the address's bucket
    and blocks, the country's cap. A trusted principal (staff, a service) is counted in its
    own bucket only, with no block and no DDoS mode. ``ddos``: DDoS mode is on (the
    instance's copy); ``address_users``: how many users' limits the address's bucket of
    signed-in traffic holds."""
    uid = who.uid or ""
    ip = who.ip
    cls = policy.endpoint_class.value
    ddos = ddos and not principal_only
    limit = limits.ddos_limit if ddos else limits.limit
    guarded = policy.brute_force_guarded and not principal_only
    slots: list[Slot] = []
    if uid:
        blocks: list[tuple[str, str]] = []
        if not principal_only:
            blocks.append((keys.block("ddos", "user", uid), Reason.USER_BLOCK.value))
        if guarded:
            blocks.append((keys.block("bf", "user", uid), Reason.BRUTE_FORCE_BLOCK.value))
        pass_limit = limits.limit if ddos else 0
        bucket = keys.bucket(cls, "u", uid)
        slots.append(
            Slot.of(SlotKind.USER, bucket, limit, blocks, pass_limit, keys.panic_pass(uid))
        )
    if principal_only:
        return slots
    blocks = [(keys.block("ddos", "ip", ip), Reason.IP_BLOCK.value)]
    if guarded:
        blocks.append((keys.block("bf", "ip", ip), Reason.BRUTE_FORCE_BLOCK.value))
    address_limit = limit * address_users if uid else limit
    bucket = keys.bucket(cls, "ip" if uid else "anon", ip)
    slots.append(Slot.of(SlotKind.ADDRESS, bucket, address_limit, blocks))
    cap = limits.country_cap or 0
    if cap > 0:
        country = keys.country_bucket(who.country or "unknown")
        slots.append(Slot.of(SlotKind.COUNTRY, country, cap, []))
    return slots
