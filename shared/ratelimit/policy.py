"""Rate-limit policy: the limits and failure modes of each endpoint class, geo scaling.

Pure: numbers come from :mod:`shared.thresholds`, rules from the caller. The classes
themselves (:class:`EndpointClass`) are part of the wire model (:mod:`shared.models.ddos`:
a request names its class), so the models never import the rate limiter; they are
re-exported here as the policy's vocabulary.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

from shared import thresholds
from shared.models.ddos import EndpointClass as EndpointClass
from shared.models.slo import ActionsSnapshot, SloAction


class FailMode(enum.StrEnum):
    """What a class does when Redis cannot answer."""

    OPEN = "open"
    """Allow the request (the failure is counted and logged)."""
    CLOSED = "closed"
    """Deny it with UNAVAILABLE: money and credentials are never unguarded."""


class Reason(enum.StrEnum):
    """Why a decision came out as it did."""

    OK = "ok"
    USER_LIMIT = "user_limit"
    IP_LIMIT = "ip_limit"
    COUNTRY_CAP = "country_cap"
    BRUTE_FORCE_BLOCK = "brute_force_block"
    IP_BLOCK = "ip_block"
    USER_BLOCK = "user_block"
    """The user was blocked by DDoS auto-mitigation (a flooder behind a shared address)."""
    SHADOW_LIMITED = "shadow_limited"
    """Would have been denied; the class is in shadow mode, so it was allowed."""
    PANIC_PASS = "panic_pass"
    """DDoS mode is on and the caller holds a panic pass: throttles were bypassed."""
    REDIS_UNAVAILABLE = "redis_unavailable"
    """Redis did not answer; the class fails open."""
    PREAUTH_LIMIT = "preauth_limit"
    """Too many requests without a valid token (none, bad, wrong role) from one address."""
    ANON_REFUSED = "anon_refused"
    """The address is refused for traffic without a valid token (a held block's narrow
    action)."""
    SHED = "shed"
    """The class is shed: the platform's error budget burns at the page rate and the
    ``shed`` action is enforced for it (:func:`shed_verdict`). Refused before any bucket."""


@dataclass(frozen=True)
class ClassPolicy:
    endpoint_class: EndpointClass
    limit_per_min: int
    fail_mode: FailMode
    brute_force_guarded: bool


@functools.cache
def class_policy(endpoint_class: EndpointClass) -> ClassPolicy:
    name = endpoint_class.value
    return ClassPolicy(
        endpoint_class=endpoint_class,
        limit_per_min=thresholds.RATE_LIMIT_PER_MIN[name],
        fail_mode=(
            FailMode.CLOSED if name in thresholds.RATE_LIMIT_FAIL_CLOSED_CLASSES else FailMode.OPEN
        ),
        brute_force_guarded=name in thresholds.BRUTE_FORCE_GUARDED_CLASSES,
    )


@dataclass(frozen=True)
class GeoRule:
    """An admin's throttle for one country."""

    country: str
    multiplier: float = 1.0
    """Scales every class's per-user and per-IP limit for users in the country."""
    region_cap_per_min: int | None = None
    """Total requests per minute from the whole country (all classes), or no cap."""


@dataclass(frozen=True)
class Limits:
    """The numbers one decision runs with."""

    limit: int
    ddos_limit: int
    country_cap: int | None


def scaled(limit: int, factor: float) -> int:
    """``limit`` times ``factor``, rounded down, never below one request."""
    return max(1, math.floor(limit * factor + 1e-9))


def limits_for(policy: ClassPolicy, rule: GeoRule | None) -> Limits:
    multiplier = rule.multiplier if rule is not None else 1.0
    limit = scaled(policy.limit_per_min, multiplier)
    return Limits(
        limit=limit,
        ddos_limit=scaled(limit, thresholds.DDOS_MODE_LIMIT_FACTOR),
        country_cap=rule.region_cap_per_min if rule is not None else None,
    )


def over_ddos_limit(remaining: int, limit: int) -> bool:
    """True when this request used more of the limit than DDoS mode allows: DDoS mode
    would have denied it. The blast radius of DDoS mode is measured with it."""
    return limit - remaining > scaled(limit, thresholds.DDOS_MODE_LIMIT_FACTOR)


def near_limit(remaining: int, limit: int) -> bool:
    """True when this request used more than the near-limit share of the limit."""
    used = limit - remaining
    return used * 100 >= limit * thresholds.RATE_LIMIT_NEAR_LIMIT_PCT


class ShedVerdict(enum.Enum):
    """What the ``shed`` action does to one request."""

    NONE = "none"
    """Decided as usual."""
    SHADOW = "shadow"
    """Shedding is wanted for its class in shadow mode: decided as usual, counted."""
    ENFORCE = "enforce"
    """Refused with :attr:`Reason.SHED`, before any bucket is read."""


def shed_verdict(
    snapshot: ActionsSnapshot | None, endpoint_class: EndpointClass, principal: bool
) -> ShedVerdict:
    """Whether the budgets' ``shed`` action takes this request: its class is among the
    action's ``classes`` and the action is enforced (or wanted in shadow mode). A trusted
    principal's call (``principal``: staff, a trusted service) is never shed, nor is
    anything when there is no current snapshot."""
    if snapshot is None or principal:
        return ShedVerdict.NONE
    state = snapshot.enforced(SloAction.SHED)
    if state is not None and endpoint_class.value in state.classes:
        return ShedVerdict.ENFORCE
    state = snapshot.shadowed(SloAction.SHED)
    if state is not None and endpoint_class.value in state.classes:
        return ShedVerdict.SHADOW
    return ShedVerdict.NONE
