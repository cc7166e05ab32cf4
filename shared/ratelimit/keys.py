"""Redis key names of traffic protection, in one place.

All keys of one decision must live on one Redis node (the decision is one
script): use a standalone or primary/replica Redis (Memorystore Basic/Standard),
not Redis Cluster, for these keys.
"""

from __future__ import annotations

from datetime import datetime

PREFIX = "pack391"


def minute_of(now: datetime) -> int:
    """Minutes since the epoch: the id of a per-minute counter."""
    return int(now.timestamp()) // 60


def bucket(endpoint_class: str, scope: str, subject: str) -> str:
    return f"{PREFIX}:rl:{endpoint_class}:{scope}:{subject}"


def country_bucket(country: str) -> str:
    return f"{PREFIX}:rl:cc:{country}"


def block(kind: str, scope: str, subject: str) -> str:
    return f"{PREFIX}:block:{kind}:{scope}:{subject}"


def failures(kind: str, scope: str, subject: str) -> str:
    return f"{PREFIX}:bf:fail:{kind}:{scope}:{subject}"


def offences(scope: str, subject: str) -> str:
    return f"{PREFIX}:bf:offences:{scope}:{subject}"


def panic_pass(uid: str) -> str:
    return f"{PREFIX}:pass:{uid}"


def panic_count(uid: str, day: str) -> str:
    return f"{PREFIX}:pass:count:{uid}:{day}"


DDOS_MODE = f"{PREFIX}:ddos:mode"

ANON_LOCKDOWN = f"{PREFIX}:ddos:anon"
"""Set (with a TTL) while every request without a valid token is refused at the front door:
the answer to a global attack without tokens, which no signed-in user feels."""

BLOCKED_ADDRESSES = f"{PREFIX}:block:ddos:ips"
"""Sorted set: every address under a DDoS block, scored by the block's end (ms). The
front door reads it (about once a second per instance) to turn blocked addresses away
before token verification; ``block(\"ddos\", \"ip\", ip)`` stays the exact check."""


ANON_REFUSED_ADDRESSES = f"{PREFIX}:block:anon:ips"
"""Sorted set: addresses refused for traffic without a valid token, scored by the end
(ms): the narrow action of a held address block (its signed-in users keep working).
Read with the block list."""


def shield_successes(kind: str, uid: str) -> str:
    """How many times a user's reported successes cleared their failure window lately."""
    return f"{PREFIX}:bf:succ:{kind}:{uid}"


def stats(minute: int) -> str:
    return f"{PREFIX}:st:{minute}"


def stats_ips(minute: int) -> str:
    return f"{PREFIX}:st:{minute}:ip"


def stats_hll(minute: int) -> str:
    return f"{PREFIX}:st:{minute}:hll"


def stats_fingerprints(minute: int) -> str:
    return f"{PREFIX}:st:{minute}:ua"


def stats_fingerprint_ips(minute: int, fingerprint: str) -> str:
    return f"{PREFIX}:st:{minute}:ua:{fingerprint}"


def stats_ip_users(minute: int, ip: str) -> str:
    """Requests per signed-in user seen from one address (zset): shared addresses."""
    return f"{PREFIX}:st:{minute}:ipu:{ip}"


def stats_users_hll(minute: int) -> str:
    """Distinct signed-in users of the minute (HyperLogLog): the blast-radius base."""
    return f"{PREFIX}:st:{minute}:uhll"


def stats_ip_established(minute: int, ip: str) -> str:
    """Distinct *established* users seen behind one address (HyperLogLog): the address's
    quota (:file:`shared/lua/rate_decide.lua`) and the shared-address rule read it."""
    return f"{PREFIX}:st:{minute}:ipe:{ip}"


def stats_overddos_users(minute: int) -> str:
    """Distinct established users who used more of a limit than DDoS mode would allow
    (HyperLogLog): DDoS mode's blast radius, in people."""
    return f"{PREFIX}:st:{minute}:odu"


def stats_preauth(minute: int) -> str:
    """Requests without a valid token per address, fleet-wide (zset): the pre-auth
    bucket's backstop, read back by each instance's counter flush."""
    return f"{PREFIX}:st:{minute}:pre"
