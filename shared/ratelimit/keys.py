"""Redis key names of traffic protection, in one place, laid out for a Redis Cluster.

Every script and transaction touches keys of one hash slot, so the same code runs on one
Redis and on a Redis Cluster (Memorystore for Redis Cluster). The ``{...}`` part of a key
is its hash tag: only it decides the slot.

- ``{u:UID}``: everything about one user (their buckets of every class, their blocks,
  failure windows and offences, panic passes, the shield's success resets);
- ``{ip:ADDRESS}``: everything about one source address (its buckets, blocks, failure
  windows and offences, and the established users seen behind it, which size its quota);
- ``{cc:COUNTRY}``: a country's cap bucket;
- ``{pack391:g}``: the few global flags and lists (DDoS mode, the lockdown, the blocked
  and refused address lists), read by each instance about once a second, never inside a
  decision's script.

A decision is then one script per slot it needs (the user's, the address's, the country's),
sent together in one pipeline: one round trip on one Redis, one per shard on a cluster
(:mod:`shared.ratelimit.limiter`). The traffic counters of :mod:`functions.ddos` (per
minute, ``pack391:st:...``) are written and read one key per command, so they need no tag.
"""

from __future__ import annotations

from datetime import datetime

PREFIX = "pack391"

GLOBAL = "{pack391:g}"
"""The hash tag of the global keys: one slot, so one transaction can touch them all."""


def minute_of(now: datetime) -> int:
    """Minutes since the epoch: the id of a per-minute counter."""
    return int(now.timestamp()) // 60


def user_tag(uid: str) -> str:
    return f"{{u:{uid}}}"


def address_tag(ip: str) -> str:
    return f"{{ip:{ip}}}"


def scope_tag(scope: str, subject: str) -> str:
    """The tag of a block's or a shield's scope: ``user`` (a uid), ``ip`` or ``anon`` (an
    address)."""
    if scope == "user" or scope == "u":
        return user_tag(subject)
    if scope in ("ip", "anon"):
        return address_tag(subject)
    raise ValueError(f"unknown scope {scope!r}: user, ip or anon")


def bucket(endpoint_class: str, scope: str, subject: str) -> str:
    """A GCRA bucket: scope ``u`` (a user), ``ip`` (an address's signed-in traffic) or
    ``anon`` (an address's traffic without a user)."""
    return f"{PREFIX}:{scope_tag(scope, subject)}:rl:{endpoint_class}:{scope}"


def country_bucket(country: str) -> str:
    return f"{PREFIX}:{{cc:{country}}}:rl"


def block(kind: str, scope: str, subject: str) -> str:
    return f"{PREFIX}:{scope_tag(scope, subject)}:block:{kind}"


def block_pattern(kind: str, scope: str | None = None) -> str:
    """A SCAN pattern of every block of ``kind`` (of one scope's subjects, or all)."""
    tag = {"user": "{u:*}", "ip": "{ip:*}", None: "{*}"}[scope]
    return f"{PREFIX}:{tag}:block:{kind}"


def failures(kind: str, scope: str, subject: str) -> str:
    return f"{PREFIX}:{scope_tag(scope, subject)}:bf:fail:{kind}"


def offences(scope: str, subject: str) -> str:
    return f"{PREFIX}:{scope_tag(scope, subject)}:bf:offences"


def panic_pass(uid: str) -> str:
    return f"{PREFIX}:{user_tag(uid)}:pass"


def panic_count(uid: str, day: str) -> str:
    return f"{PREFIX}:{user_tag(uid)}:pass:count:{day}"


def shield_successes(kind: str, uid: str) -> str:
    """How many times a user's reported successes cleared their failure window lately."""
    return f"{PREFIX}:{user_tag(uid)}:bf:succ:{kind}"


def stats_ip_established(minute: int, ip: str) -> str:
    """Distinct *established* users seen behind one address (HyperLogLog): the address's
    quota (:file:`shared/lua/rate_slot.lua`) and the shared-address rule of the shield read
    it. In the address's slot: the shield's address script reads it with the address's
    failure window."""
    return f"{PREFIX}:{address_tag(ip)}:st:{minute}:ipe"


DDOS_MODE = f"{PREFIX}:{GLOBAL}:ddos:mode"
"""DDoS mode (JSON, with a TTL). Each instance reads it about once a second with the
block lists (:mod:`shared.ratelimit.door`) and decides with that copy."""

ANON_LOCKDOWN = f"{PREFIX}:{GLOBAL}:ddos:anon"
"""Set (with a TTL) while every request without a valid token is refused at the front door:
the answer to a global attack without tokens, which no signed-in user feels."""

BLOCKED_ADDRESSES = f"{PREFIX}:{GLOBAL}:block:ddos:ips"
"""Sorted set: every address under a DDoS block, scored by the block's end (ms). The
front door reads it (about once a second per instance) to turn blocked addresses away
before token verification; ``block(\"ddos\", \"ip\", ip)`` stays the exact check."""


ANON_REFUSED_ADDRESSES = f"{PREFIX}:{GLOBAL}:block:anon:ips"
"""Sorted set: addresses refused for traffic without a valid token, scored by the end
(ms): the narrow action of a held address block (its signed-in users keep working).
Read with the block list."""


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


def stats_overddos_users(minute: int) -> str:
    """Distinct established users who used more of a limit than DDoS mode would allow
    (HyperLogLog): DDoS mode's blast radius, in people."""
    return f"{PREFIX}:st:{minute}:odu"


def stats_preauth(minute: int) -> str:
    """Requests without a valid token per address, fleet-wide (zset): the pre-auth
    bucket's backstop, read back by each instance's counter flush."""
    return f"{PREFIX}:st:{minute}:pre"
