"""Traffic protection's Redis side: blocks, passes, shields, DDoS mode and the traffic
counters (the :class:`functions.ddos.ports.TrafficState` port)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis

from functions.ddos import api
from functions.ddos.api import DDoSMode
from functions.ddos.policy import MinuteTraffic, RedisMemory
from functions.ddos.ports import PassOutcome, ShieldOutcome
from shared.clock import ms
from shared.ratelimit import keys
from shared.redis import LUA_DIR, ScriptCall, lua_script, queue_pfcount, run_scripts

_SHIELD = LUA_DIR / "bf_scope.lua"
_PANIC = LUA_DIR / "panic_pass.lua"


class TrafficCounters:
    """The traffic counters the middleware writes and the detector reads (the telemetry
    Redis), and who was behind each address."""

    def __init__(self, client: redis.Redis, telemetry: redis.Redis | None = None) -> None:
        """``client``: enforcement state (blocks, mode, shields, passes; noeviction);
        ``telemetry``: the traffic counters (default: the same Redis)."""
        self._redis = client
        self._telemetry = telemetry if telemetry is not None else client

    def address_users(
        self, minute: int, ips: Iterable[str], top: int
    ) -> dict[str, tuple[int, list[tuple[str, int]]]]:
        """For each address: distinct *established* users behind it in ``minute`` (anonymous,
        new, staff and service accounts do not count) and the heaviest signed-in users
        behind it (uid, requests), established or not."""
        wanted = list(ips)
        if not wanted:
            return {}
        counts = self._redis.pipeline(transaction=False)
        tops = self._telemetry.pipeline(transaction=False)
        for ip in wanted:
            queue_pfcount(counts, keys.stats_ip_established(minute, ip))
            tops.zrevrange(keys.stats_ip_users(minute, ip), 0, top - 1, withscores=True)
        established = counts.execute()
        heaviest = tops.execute()
        return {
            ip: (int(established[i]), [(str(u), int(n)) for u, n in heaviest[i]])
            for i, ip in enumerate(wanted)
        }

    def distinct_users(self, minute: int) -> int:
        """Distinct established users of ``minute``."""
        return int(self._telemetry.pfcount(keys.stats_users_hll(minute)))

    def over_mode_users(self, minutes: Iterable[int]) -> tuple[list[int], list[int]]:
        """Per minute: established users over DDoS mode's share of a limit, and established
        users (the inputs of :func:`functions.ddos.policy.ddos_mode_blast_radius_pct`)."""
        wanted = list(minutes)
        pipe = self._telemetry.pipeline(transaction=False)
        for m in wanted:
            queue_pfcount(pipe, keys.stats_overddos_users(m))
            queue_pfcount(pipe, keys.stats_users_hll(m))
        values = [int(v) for v in pipe.execute()]
        return values[0::2], values[1::2]

    def minute(self, minute: int, elapsed_fraction: float = 1.0, top: int = 10) -> MinuteTraffic:
        pipe = self._telemetry.pipeline(transaction=False)
        pipe.hgetall(keys.stats(minute))
        queue_pfcount(pipe, keys.stats_hll(minute))
        pipe.zrevrange(keys.stats_ips(minute), 0, top - 1, withscores=True)
        pipe.zrevrange(keys.stats_fingerprints(minute), 0, 4, withscores=True)
        counters, distinct, ips, fps = pipe.execute()
        counts = self._telemetry.pipeline(transaction=False)
        for fp, _ in fps:
            queue_pfcount(counts, keys.stats_fingerprint_ips(minute, fp))
        fp_ips = counts.execute() if fps else []
        return MinuteTraffic(
            minute=minute,
            requests=total_requests(counters),
            distinct_ips=int(distinct),
            top_ips=[(ip, int(n)) for ip, n in ips],
            top_fingerprints=[
                (fp, int(n), int(count)) for (fp, n), count in zip(fps, fp_ips, strict=True)
            ],
            elapsed_fraction=elapsed_fraction,
            bot_scored_low=int(counters.get("bot:1", 0)) + int(counters.get("bot:2-29", 0)),
        )

    def fingerprint_history(
        self, fingerprints: Iterable[str], minutes: Iterable[int]
    ) -> dict[str, list[float]]:
        """Each fingerprint's share (percent) of every earlier minute that had traffic."""
        fps = list(fingerprints)
        wanted = list(minutes)
        pipe = self._telemetry.pipeline(transaction=False)
        for m in wanted:
            pipe.hgetall(keys.stats(m))
            for fp in fps:
                pipe.zscore(keys.stats_fingerprints(m), fp)
        values = pipe.execute()
        shares: dict[str, list[float]] = {fp: [] for fp in fps}
        stride = 1 + len(fps)
        for i in range(len(wanted)):
            total = total_requests(values[i * stride])
            if not total:
                continue
            for j, fp in enumerate(fps):
                count = values[i * stride + 1 + j] or 0
                shares[fp].append(float(count) * 100 / total)
        return shares

    def history(self, minutes: Iterable[int]) -> list[tuple[int, int]]:
        """(requests, distinct IPs) of each minute that has any counts."""
        wanted = list(minutes)
        pipe = self._telemetry.pipeline(transaction=False)
        for m in wanted:
            pipe.hgetall(keys.stats(m))
            queue_pfcount(pipe, keys.stats_hll(m))
        values = pipe.execute()
        out = []
        for i in range(len(wanted)):
            counters, distinct = values[2 * i], values[2 * i + 1]
            if counters:
                out.append((total_requests(counters), int(distinct)))
        return out

    def memory(self) -> list[RedisMemory]:
        """``INFO memory`` of the enforcement Redis and (when it is another one) of the
        telemetry Redis."""
        out = []
        roles = [("enforcement", self._redis)]
        if self._telemetry is not self._redis:
            roles.append(("telemetry", self._telemetry))
        for role, client in roles:
            info = client.info("memory")
            out.append(
                RedisMemory(
                    role,
                    int(info.get("used_memory", 0)),
                    int(info.get("maxmemory", 0)),
                    str(info.get("maxmemory_policy", "")),
                    shared=len(roles) == 1,
                )
            )
        return out

    def counters(self, minutes: Iterable[int]) -> dict[str, int]:
        """The per-minute stats hashes of ``minutes``, summed field by field."""
        pipe = self._telemetry.pipeline(transaction=False)
        for m in minutes:
            pipe.hgetall(keys.stats(m))
        total: dict[str, int] = {}
        for fields in pipe.execute():
            for name, value in fields.items():
                total[name] = total.get(name, 0) + int(value)
        return total


class TrafficStore(TrafficCounters):
    """Redis side of traffic protection: the counters, and the enforcement state (blocks,
    DDoS mode, shields, passes) that the decision script reads."""

    # --- brute-force shield and panic passes

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
    ) -> ShieldOutcome:
        """One attempt. ``address_scope``: a failure the server observed, which also feeds
        the address's window of distinct failing accounts (``account``: the account it
        was for); without it only the user's own window is fed."""
        subject = uid or ""
        minute = keys.minute_of(now)
        script = lua_script(_SHIELD, self._redis)
        durations = ",".join(str(d) for d in block_ms)
        verdict = "failure" if failure else "success"
        calls = []
        if uid:
            user_keys = [
                keys.failures(kind, "user", subject),
                keys.offences("user", subject),
                keys.block("bf", "user", subject),
                keys.shield_successes(kind, subject),
            ]
            user_args = [
                ms(now), verdict, window_ms, max_failures, durations, offence_memory_ms,
                uuid.uuid4().hex, "user", 1, success_resets, 0,
            ]  # fmt: skip
            calls.append(ScriptCall(script, user_keys, user_args))
        address_keys = [
            keys.failures(kind, "ip", ip),
            keys.offences("ip", ip),
            keys.block("bf", "ip", ip),
            keys.stats_ip_established(minute - 1, ip),
            keys.stats_ip_established(minute, ip),
        ]
        address_args = [
            ms(now), verdict, window_ms, address_min_accounts, durations,
            address_offence_memory_ms, account or subject, "address",
            1 if address_scope else 0, 0, shared_min_users,
        ]  # fmt: skip
        calls.append(ScriptCall(script, address_keys, address_args))
        answers = [[int(v) for v in out] for out in run_scripts(self._redis, calls)]
        user = answers[0] if uid else [0, 0, 0, 0, max_failures]
        address = answers[-1]
        until = max(user[0], address[0])
        return ShieldOutcome(
            blocked=until > 0,
            attempts_left=0 if until > 0 else user[4],
            blocked_until_ms=until,
            user_blocked_until_ms=user[1],
            ip_blocked_until_ms=address[1],
            user_offence=user[2],
            ip_offence=address[2],
            address_held=bool(address[3]),
        )

    def grant_pass(self, uid: str, now: datetime, duration_ms: int, per_day: int) -> PassOutcome:
        day = now.astimezone(UTC).strftime("%Y%m%d")
        out = lua_script(_PANIC, self._redis)(
            keys=[keys.panic_pass(uid), keys.panic_count(uid, day)],
            args=[ms(now), duration_ms, per_day, 2 * 24 * 3600 * 1000],
        )
        granted, expires, left, newly = (int(v) for v in out)
        return PassOutcome(bool(granted), expires, left, bool(newly))

    # --- DDoS mode and source blocks

    def ddos_mode(self) -> DDoSMode | None:
        return api.ddos_mode(self._redis)

    def extend_ddos_mode(
        self, until_ms: int, reason: str, now: datetime, evidence: dict[str, Any] | None = None
    ) -> DDoSMode:
        """Turn DDoS mode on until ``until_ms`` (never shortens an existing period)."""
        current = self.ddos_mode()
        if current is not None and current.until_ms >= until_ms:
            return current
        ttl = max(1, until_ms - ms(now))
        payload = json.dumps({"untilMs": until_ms, "reason": reason, "evidence": evidence or {}})
        self._redis.set(keys.DDOS_MODE, payload, px=ttl)
        return DDoSMode(until_ms, reason, evidence or {})

    def end_ddos_mode(self) -> bool:
        """End DDoS mode and the lockdown; True when either was on."""
        return bool(self._redis.delete(keys.DDOS_MODE, keys.ANON_LOCKDOWN))

    def lockdown_until_ms(self) -> int:
        """When the lockdown of requests without a valid token ends (0: off)."""
        raw = self._redis.get(keys.ANON_LOCKDOWN)
        return int(raw) if raw else 0

    def extend_lockdown(self, until_ms: int, now: datetime) -> None:
        """Refuse every request without a valid token until ``until_ms`` (never shortens)."""
        if self.lockdown_until_ms() >= until_ms:
            return
        self._redis.set(keys.ANON_LOCKDOWN, str(until_ms), px=max(1, until_ms - ms(now)))

    def block_source(self, ip: str, until_ms: int, now: datetime) -> None:
        """Block an address for every class: the exact key the decision checks, and the
        sorted set the front door's copy is read from (expired entries trimmed). Two slots
        (the address's and the global one), so no transaction: the exact key is written
        first, so a block is never listed without being in force."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(keys.block("ddos", "ip", ip), str(until_ms), px=max(1, until_ms - ms(now)))
        pipe.zadd(keys.BLOCKED_ADDRESSES, {ip: until_ms})
        pipe.zremrangebyscore(keys.BLOCKED_ADDRESSES, "-inf", ms(now))
        pipe.execute()

    def refuse_anonymous(self, ip: str, until_ms: int, now: datetime) -> None:
        """Refuse traffic without a valid token from an address (the front door's copy is
        read from this sorted set with the block list); expired entries trimmed."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(keys.ANON_REFUSED_ADDRESSES, {ip: until_ms})
        pipe.zremrangebyscore(keys.ANON_REFUSED_ADDRESSES, "-inf", ms(now))
        pipe.execute()

    def block_user(self, uid: str, until_ms: int, now: datetime) -> None:
        self._redis.set(
            keys.block("ddos", "user", uid), str(until_ms), px=max(1, until_ms - ms(now))
        )

    def lift(self, scope: str, subject: str) -> list[str]:
        """Remove every block on ``subject`` (DDoS and brute force); returns the kinds that
        were active. Offence history is kept: a later offence still escalates. The subject's
        keys and the global lists are in two slots: no transaction; the exact keys go first,
        and the front door's copy of the lists is only ever a fast path to them."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(keys.block("ddos", scope, subject))
        pipe.delete(keys.block("bf", scope, subject))
        if scope == "ip":
            pipe.zrem(keys.BLOCKED_ADDRESSES, subject)
            pipe.zrem(keys.ANON_REFUSED_ADDRESSES, subject)
        removed = pipe.execute()
        lifted = [kind for kind, n in zip(("ddos", "brute_force"), removed[:2], strict=True) if n]
        if scope == "ip" and removed[3]:
            lifted.append("refuse_anonymous")
        return lifted


def total_requests(counters: dict[str, str]) -> int:
    """A minute's requests: every request counted once as a source (``all``: at the front
    door, before token verification, or by the decision). Older counters without it: the
    sum of the per-class counters (``req:<class>``)."""
    if "all" in counters:
        return int(counters["all"])
    return sum(int(v) for name, v in counters.items() if name.startswith("req:"))
