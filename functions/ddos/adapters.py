"""Traffic-protection I/O: Redis (blocks, passes, counters, DDoS mode) and Firestore mirrors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from functions.ddos.policy import MinuteTraffic, RedisMemory
from shared import collections, protection
from shared.audit import DELETE, Change, Delete, audited_write, write_audit
from shared.clock import ms
from shared.firestore import delete_matching
from shared.models.ddos import (
    AllowlistEntryDoc,
    BlockDoc,
    BlockScope,
    DetectionDoc,
    GeoThrottleDoc,
    PanicPassDoc,
)
from shared.protection import DDoSMode
from shared.ratelimit import keys
from shared.redis import LUA_DIR, lua_script

if TYPE_CHECKING:
    # The Firestore client is imported where it is used, so that a cold instance of a
    # function that only talks to Redis (pack391_checkRateLimit) does not load it.
    from google.cloud import firestore

_SHIELD = LUA_DIR / "bf_attempt.lua"
_PANIC = LUA_DIR / "panic_pass.lua"


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


class TrafficStore:
    """Redis side of traffic protection."""

    def __init__(self, client: redis.Redis, telemetry: redis.Redis | None = None) -> None:
        """``client``: enforcement state (blocks, mode, shields, passes; noeviction);
        ``telemetry``: the traffic counters (default: the same Redis)."""
        self._redis = client
        self._telemetry = telemetry if telemetry is not None else client

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
        out = lua_script(_SHIELD, self._redis)(
            keys=[
                keys.failures(kind, "user", subject),
                keys.failures(kind, "ip", ip),
                keys.offences("user", subject),
                keys.offences("ip", ip),
                keys.block("bf", "user", subject),
                keys.block("bf", "ip", ip),
                keys.shield_successes(kind, subject),
                keys.stats_ip_established(minute - 1, ip),
                keys.stats_ip_established(minute, ip),
            ],
            args=[
                ms(now),
                "failure" if failure else "success",
                window_ms,
                max_failures,
                ",".join(str(d) for d in block_ms),
                offence_memory_ms,
                uuid.uuid4().hex,
                1 if uid else 0,
                success_resets,
                2 if address_scope else 0,
                account or subject,
                shared_min_users,
                address_offence_memory_ms,
                address_min_accounts,
            ],
        )
        values = [int(v) for v in out]
        return ShieldOutcome(
            blocked=bool(values[0]),
            attempts_left=values[1],
            blocked_until_ms=values[2],
            user_blocked_until_ms=values[3],
            ip_blocked_until_ms=values[4],
            user_offence=values[5],
            ip_offence=values[6],
            address_held=bool(values[7]),
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
        return protection.ddos_mode(self._redis)

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
        sorted set the front door's copy is read from (expired entries trimmed)."""
        pipe = self._redis.pipeline(transaction=True)
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
        were active. Offence history is kept: a later offence still escalates."""
        pipe = self._redis.pipeline(transaction=True)
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
            counts.pfcount(keys.stats_ip_established(minute, ip))
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
            pipe.pfcount(keys.stats_overddos_users(m))
            pipe.pfcount(keys.stats_users_hll(m))
        values = [int(v) for v in pipe.execute()]
        return values[0::2], values[1::2]

    # --- counters

    def minute(self, minute: int, elapsed_fraction: float = 1.0, top: int = 10) -> MinuteTraffic:
        pipe = self._telemetry.pipeline(transaction=False)
        pipe.hgetall(keys.stats(minute))
        pipe.pfcount(keys.stats_hll(minute))
        pipe.zrevrange(keys.stats_ips(minute), 0, top - 1, withscores=True)
        pipe.zrevrange(keys.stats_fingerprints(minute), 0, 4, withscores=True)
        counters, distinct, ips, fps = pipe.execute()
        counts = self._telemetry.pipeline(transaction=False)
        for fp, _ in fps:
            counts.pfcount(keys.stats_fingerprint_ips(minute, fp))
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
            pipe.pfcount(keys.stats_hll(m))
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


class ProtectionRepository:
    """Firestore side: geo rules, block mirrors, pass records, detections, alerts."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def set_geo(self, doc: GeoThrottleDoc, change: Change) -> GeoThrottleDoc:
        """Replace a country's throttle (versioned, audited, in one transaction)."""
        ref = self._db.collection(collections.GEO_THROTTLES).document(doc.country)
        _, after, _ = audited_write(self._db, ref, change, GeoThrottleDoc, lambda _: doc)
        assert after is not None  # a replacement always writes
        return after

    def geo_rules(self) -> list[GeoThrottleDoc]:
        docs = self._db.collection(collections.GEO_THROTTLES).stream()
        return [GeoThrottleDoc.model_validate(s.to_dict()) for s in docs]

    def mirror_block(self, block: BlockDoc) -> None:
        doc_id = f"{block.kind.value}_{block.scope.value}_{block.subject}_{ms(block.expires_at)}"
        self._db.collection(collections.BLOCKS).document(doc_id.replace("/", "_")).set(
            block.to_doc()
        )

    def active_blocks(self, now: datetime, limit: int = 100) -> list[BlockDoc]:
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self._db.collection(collections.BLOCKS)
            .where(filter=FieldFilter("expiresAt", ">", now))
            .order_by("expiresAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return [BlockDoc.model_validate(s.to_dict()) for s in query.stream()]

    def mark_lifted(self, scope: BlockScope, subject: str, change: Change) -> int:
        """End the mirrors of ``subject``'s active blocks (``liftedAt``/``liftedBy``, and
        ``expiresAt`` now, so they leave the active lists and are cleaned up), with one
        audit entry, in one batch. Returns how many mirrors it ended."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._db.collection(collections.BLOCKS).where(
            filter=FieldFilter("subject", "==", subject)
        )
        batch = self._db.batch()
        ended = []
        for snap in query.stream():
            doc = BlockDoc.model_validate(snap.to_dict())
            if doc.scope is not scope or doc.expires_at <= change.now or doc.lifted_at:
                continue
            batch.update(
                snap.reference,
                {"liftedAt": change.now, "liftedBy": change.actor_uid, "expiresAt": change.now},
            )
            ended.append(doc.model_dump(mode="json", by_alias=True))
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.BLOCKS}/{scope.value}:{subject}",
            before={"blocks": ended},
            after=None,
        )
        batch.commit()
        return len(ended)

    def audit_only(self, change: Change, target: str, before: Any, after: Any) -> None:
        batch = self._db.batch()
        write_audit(self._db, batch, change, target=target, before=before, after=after)
        batch.commit()

    def allowlist(self) -> list[AllowlistEntryDoc]:
        docs = self._db.collection(collections.DDOS_ALLOWLIST).order_by("entry").stream()
        return [AllowlistEntryDoc.model_validate(s.to_dict()) for s in docs]

    def set_allowlisted(self, entry: str, add: bool, change: Change) -> bool:
        """Add or remove an allowlist entry with its audit entry; False when nothing changed."""
        ref = self._db.collection(collections.DDOS_ALLOWLIST).document(allowlist_id(entry))

        def build(current: AllowlistEntryDoc | None) -> AllowlistEntryDoc | Delete | None:
            if (current is not None) == add:
                return None
            if not add:
                return DELETE
            return AllowlistEntryDoc(
                entry=entry,
                reason=change.reason or "",
                added_by=change.actor_uid,
                added_at=change.now,
            )

        target = f"{collections.DDOS_ALLOWLIST}/{entry}"
        return audited_write(self._db, ref, change, AllowlistEntryDoc, build, target=target)[2]

    def delete_expired_blocks(self, now: datetime, page: int = 400) -> int:
        from google.cloud.firestore_v1.base_query import FieldFilter

        expired = self._db.collection(collections.BLOCKS).where(
            filter=FieldFilter("expiresAt", "<=", now)
        )
        return delete_matching(self._db, expired, page)

    def record_pass(self, doc: PanicPassDoc) -> None:
        self._db.collection(collections.PANIC_PASSES).document().set(doc.to_doc())

    def passes_since(self, since: datetime) -> int:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query: Any = self._db.collection(collections.PANIC_PASSES).where(
            filter=FieldFilter("grantedAt", ">=", since)
        )
        return int(query.count(alias="n").get()[0][0].value)

    def record_detection(self, doc_id: str, detection: DetectionDoc) -> None:
        """One detection (its id is minute and kind: a re-run overwrites, never duplicates).
        Its alert goes through :mod:`shared.alerts`."""
        self._db.collection(collections.DDOS_DETECTIONS).document(doc_id).set(detection.to_doc())

    def recent_detections(self, limit: int = 20) -> list[DetectionDoc]:
        return protection.recent_detections(self._db, limit)


def total_requests(counters: dict[str, str]) -> int:
    """A minute's requests: every request counted once as a source (``all``: at the front
    door, before token verification, or by the decision). Older counters without it: the
    sum of the per-class counters (``req:<class>``)."""
    if "all" in counters:
        return int(counters["all"])
    return sum(int(v) for name, v in counters.items() if name.startswith("req:"))


def allowlist_id(entry: str) -> str:
    """The document id of an allowlist entry (a CIDR's "/" is not allowed in ids)."""
    return entry.replace("/", "_").replace(":", "-")
