"""The limiter against a real redis-server: exactness, buckets, modes, failures."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from redis.crc import key_slot

from shared import thresholds
from shared.firestore import get_db
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import RateLimiter, Subject
from shared.ratelimit.policy import EndpointClass, Reason
from shared.redis import client_for_url, get_redis
from stack.platform import datastores
from tests.conftest import Backends, RedisBackend
from tests.redis_now import redis_now

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def who(uid: str | None = "alice", ip: str = "198.51.100.1", country: str | None = None) -> Subject:
    return Subject(uid, ClientInfo(ip, country, "fp-1"))


@pytest.fixture
def limiter(redis_backend: RedisBackend) -> RateLimiter:
    """A limiter on one Redis, and again on a Redis Cluster (``redis_backend``)."""
    return RateLimiter(get_redis(), GeoRules(get_db, first_wait_sec=10))


@pytest.fixture
def timeless_limiter(redis_backend: RedisBackend) -> RateLimiter:
    """A limiter whose buckets' keys outlive their TAT by ten minutes: a burst decided at
    one fixed ``now`` while seconds pass on Redis's clock (keys expire on Redis's clock)
    finds every key it set, however long a thread stalls on a loaded machine."""
    return RateLimiter(get_redis(), GeoRules(get_db, first_wait_sec=10), key_grace_sec=600)


@pytest.mark.parametrize(("cls", "limit"), list(thresholds.RATE_LIMIT_PER_MIN.items()))
def test_concurrent_requests_pass_exactly_the_limit(
    timeless_limiter: RateLimiter, cls: str, limit: int
) -> None:
    n = limit * 2 + 7

    def one(_: int) -> bool:
        return timeless_limiter.decide(EndpointClass(cls), who(), NOW).allowed

    with ThreadPoolExecutor(max_workers=16) as pool:
        passed = sum(pool.map(one, range(n)))
    assert passed == limit


def test_a_bucket_outlives_its_tat_by_the_grace_so_a_lagging_decision_finds_it(
    redis_backend: RedisBackend,
) -> None:
    """A decision whose ``now`` lags Redis's clock (here: the same ``now`` 300 ms later)
    still finds the bucket the previous one set: the key expires at its TAT plus the grace
    (30 s here, so that a stalled test thread cannot outlast it)."""
    limiter = RateLimiter(get_redis(), GeoRules(get_db, first_wait_sec=10), key_grace_sec=30)
    service = EndpointClass("service")
    first = limiter.decide(service, who(), NOW)
    interval_ms = 60_000 / thresholds.RATE_LIMIT_PER_MIN["service"]
    ttl = redis_now().pttl(keys.bucket("service", "u", "alice"))
    assert interval_ms < ttl <= interval_ms + 30_000
    time.sleep(0.3)  # past the bucket's TAT (50 ms after NOW on Redis's clock)
    second = limiter.decide(service, who(), NOW)
    assert second.remaining == first.remaining - 1


def test_user_and_ip_are_separate_buckets(limiter: RateLimiter) -> None:
    cls = EndpointClass.PAYMENT  # 3 per minute
    assert [limiter.decide(cls, who("a", "1.1.1.1"), NOW).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    # same user from another IP: the user bucket is empty
    denied = limiter.decide(cls, who("a", "2.2.2.2"), NOW)
    assert (denied.allowed, denied.reason) == (False, Reason.USER_LIMIT)
    # other users behind the first IP are served: the address's own quota holds 20 users'
    # limits (one subscriber of a carrier NAT never spends everyone's)
    others = [
        limiter.decide(cls, who(f"b{i}", "1.1.1.1"), NOW) for i in range(19) for _ in range(3)
    ]
    assert all(d.allowed for d in others)
    full = limiter.decide(cls, who("b-last", "1.1.1.1"), NOW)
    assert (full.allowed, full.reason) == (False, Reason.IP_LIMIT)  # 20 x 3 spent
    # without a user, the address's anonymous bucket has the plain limit
    anonymous = [limiter.decide(cls, who(None, "4.4.4.4"), NOW) for _ in range(4)]
    assert [(d.allowed, d.reason) for d in anonymous][-1] == (False, Reason.IP_LIMIT)
    assert all(d.allowed for d in anonymous[:3])
    # a fresh user on a fresh IP passes
    assert limiter.decide(cls, who("c", "3.3.3.3"), NOW).allowed


def test_denial_does_not_consume(limiter: RateLimiter) -> None:
    cls = EndpointClass.AUTH  # 5 per minute, one every 12 s
    for _ in range(5):
        assert limiter.decide(cls, who(), NOW).allowed
    for _ in range(50):  # hammering while denied does not push the reset further
        assert not limiter.decide(cls, who(), NOW + timedelta(seconds=1)).allowed
    assert limiter.decide(cls, who(), NOW + timedelta(seconds=12)).allowed


def test_retry_after_is_exact(limiter: RateLimiter) -> None:
    cls = EndpointClass.AUTH
    first = limiter.decide(cls, who(), NOW)
    assert (first.remaining, first.reset_sec, first.limit) == (4, 12.0, 5)
    for _ in range(4):
        last = limiter.decide(cls, who(), NOW)
    assert last.remaining == 0
    denied = limiter.decide(cls, who(), NOW + timedelta(seconds=2.5))
    assert (denied.allowed, denied.retry_after_sec) == (False, 9.5)
    assert not limiter.decide(cls, who(), NOW + timedelta(seconds=11.999)).allowed
    assert limiter.decide(cls, who(), NOW + timedelta(seconds=12)).allowed


def test_keys_expire_by_themselves(limiter: RateLimiter, redis_backend: RedisBackend) -> None:
    limiter.decide(EndpointClass.SWIPE, who(), NOW)
    limiter.flush_counters()
    client = redis_backend.client
    ttl_ms = client.pttl(keys.bucket("swipe", "u", "alice"))
    # 100/min: one request refills in 0.6 s; the key lives the grace longer
    assert 0 < ttl_ms <= 600 + thresholds.RATE_LIMIT_KEY_GRACE_SEC * 1000
    assert client.pttl(keys.stats(keys.minute_of(NOW))) > 3600 * 1000


def test_anonymous_subject_counts_only_the_ip(limiter: RateLimiter) -> None:
    for _ in range(3):
        assert limiter.decide(EndpointClass.PAYMENT, who(None, "4.4.4.4"), NOW).allowed
    denied = limiter.decide(EndpointClass.PAYMENT, who(None, "4.4.4.4"), NOW)
    assert (denied.allowed, denied.reason) == (False, Reason.IP_LIMIT)


def test_shadow_mode_counts_but_never_denies(redis_backend: RedisBackend) -> None:
    limiter = RateLimiter(get_redis(), GeoRules(get_db, first_wait_sec=10), frozenset({"payment"}))
    results = [limiter.decide(EndpointClass.PAYMENT, who(), NOW) for _ in range(5)]
    limiter.flush_counters()
    assert all(r.allowed for r in results)
    assert [r.reason for r in results] == [Reason.OK] * 3 + [Reason.SHADOW_LIMITED] * 2
    counters = redis_backend.client.hgetall(keys.stats(keys.minute_of(NOW)))
    assert counters["shadow:payment"] == "2"
    assert "den:payment" not in counters


def test_near_limit_counter(limiter: RateLimiter, redis_backend: RedisBackend) -> None:
    for _ in range(5):
        limiter.decide(EndpointClass.AUTH, who(), NOW)
    limiter.flush_counters()
    counters = redis_backend.client.hgetall(keys.stats(keys.minute_of(NOW)))
    assert counters["near:auth"] == "2"  # the 4th and 5th of 5 used >= 80%


def test_geo_multiplier_and_country_cap(limiter: RateLimiter) -> None:
    geo = GeoRules(get_db, first_wait_sec=10)
    get_db().collection("pack391_geo_throttles").document("BR").set(
        {"country": "BR", "multiplier": 0.4, "regionCapPerMin": 12}
    )
    limited = RateLimiter(get_redis(), geo)
    auth = [limited.decide(EndpointClass.AUTH, who("u", "5.5.5.5", "BR"), NOW) for _ in range(3)]
    assert [r.allowed for r in auth] == [True, True, False]  # 5 x 0.4 = 2
    assert auth[0].limit == 2
    # the country cap is over every class and everyone in the country
    passed = sum(
        limited.decide(EndpointClass.SWIPE, who(f"u{i}", f"6.6.6.{i}", "BR"), NOW).allowed
        for i in range(20)
    )
    assert passed == 12 - 2  # the two admitted auth requests counted against the cap too
    capped = limited.decide(EndpointClass.SWIPE, who("z", "7.7.7.7", "BR"), NOW)
    assert capped.reason == Reason.COUNTRY_CAP
    # other countries are untouched
    assert limited.decide(EndpointClass.SWIPE, who("z", "7.7.7.7", "PL"), NOW).allowed


def test_geo_rules_are_cached_for_their_ttl(backends: Backends) -> None:
    clock = [100.0]
    geo = GeoRules(get_db, ttl_sec=30, monotonic=lambda: clock[0], first_wait_sec=10)
    assert geo.get("DE") is None
    get_db().collection("pack391_geo_throttles").document("DE").set(
        {"country": "DE", "multiplier": 2.0}
    )
    clock[0] += 29
    assert geo.get("DE") is None  # still the cached (empty) rules
    clock[0] += 1
    # stale: this request decides with the copy it has; a background read refreshes it
    assert geo.get("DE") is None
    geo.wait_idle()
    rule = geo.get("DE")
    assert rule is not None and rule.multiplier == 2.0


def test_a_stalled_firestore_never_delays_a_decision(
    tmp_path: Path, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The geo rules used to be read on the request path, under a lock, with no
    timeout. A private Firestore emulator is paused (SIGSTOP) mid-life: decisions keep
    their budget, with the last good rules, and the rules come back when it resumes."""
    child, host = datastores.start_firestore_emulator(backends.project, tmp_path)
    with monkeypatch.context() as env:  # the client reads the emulator host when built
        env.setenv("FIRESTORE_EMULATOR_HOST", host)
        client = firestore.Client(
            project=backends.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    try:
        client.collection("pack391_geo_throttles").document("BR").set(
            {"country": "BR", "multiplier": 0.4}
        )
        clock = [0.0]
        geo = GeoRules(lambda: client, ttl_sec=30, monotonic=lambda: clock[0], first_wait_sec=10)
        limiter = RateLimiter(get_redis(), geo)
        assert limiter.decide(EndpointClass.AUTH, who("a", "1.1.1.1", "BR"), NOW).limit == 2

        os.kill(child.process.pid, signal.SIGSTOP)
        clock[0] += 31  # the copy is stale: a refresh starts and hangs on the paused emulator
        started = time.monotonic()
        slowest = 0.0
        for i in range(20):
            t0 = time.monotonic()
            decision = limiter.decide(EndpointClass.AUTH, who(f"b{i}", f"2.2.2.{i}", "BR"), NOW)
            slowest = max(slowest, time.monotonic() - t0)
            assert decision.limit == 2  # the last good rules stay in force
        assert slowest < 0.5, f"a decision waited {slowest:.3f}s on a stalled Firestore"
        assert time.monotonic() - started < 2
    finally:
        os.kill(child.process.pid, signal.SIGCONT)
        child.stop()


def test_ddos_mode_tightens_and_panic_pass_bypasses(
    limiter: RateLimiter, redis_backend: RedisBackend
) -> None:
    client = redis_backend.client
    client.set(keys.DDOS_MODE, '{"untilMs": 0, "reason": "test"}', px=60_000)
    limiter.blocked.invalidate()  # an instance sees DDoS mode within a second; this one now
    tight = [limiter.decide(EndpointClass.AUTH, who("a", "8.8.8.1"), NOW) for _ in range(3)]
    assert [r.allowed for r in tight] == [True, True, False]  # 5 x 0.5 = 2
    client.set(keys.panic_pass("vip"), "1", px=60_000)
    lane = [limiter.decide(EndpointClass.AUTH, who("vip", "8.8.8.2"), NOW) for _ in range(6)]
    # the pass restores the normal limit (5), not more
    assert [r.reason for r in lane] == [Reason.PANIC_PASS] * 5 + [Reason.USER_LIMIT]
    # and still passes through the address's bucket: a pass holder behind an address that
    # is flooding gets what is left of the address's normal allowance, not a way around it
    client.set(keys.panic_pass("vip2"), "1", px=60_000)
    for i in range(20):  # the address's quota in DDoS mode: 20 users x 2
        for _ in range(2):
            limiter.decide(EndpointClass.AUTH, who(f"flooder-{i}", "8.8.8.9"), NOW)
    shared = limiter.decide(EndpointClass.AUTH, who("vip2", "8.8.8.9"), NOW)
    assert (shared.allowed, shared.reason) == (False, Reason.IP_LIMIT)
    # a pass does not lift a brute-force block
    client.set(keys.block("bf", "user", "vip"), "1", px=60_000)
    blocked = limiter.decide(EndpointClass.WALLET, who("vip", "8.8.8.2"), NOW)
    assert (blocked.allowed, blocked.reason) == (False, Reason.BRUTE_FORCE_BLOCK)
    # without DDoS mode a pass changes nothing
    client.delete(keys.DDOS_MODE, keys.block("bf", "user", "vip"))
    limiter.blocked.invalidate()
    normal = [limiter.decide(EndpointClass.PAYMENT, who("vip", "8.8.8.3"), NOW) for _ in range(4)]
    assert [r.reason for r in normal] == [Reason.OK] * 3 + [Reason.USER_LIMIT]


def test_blocks(limiter: RateLimiter, redis_backend: RedisBackend) -> None:
    client = redis_backend.client
    client.set(keys.block("bf", "ip", "9.9.9.9"), "1", px=30_000)
    wallet = limiter.decide(EndpointClass.WALLET, who("x", "9.9.9.9"), NOW)
    assert (wallet.allowed, wallet.reason) == (False, Reason.BRUTE_FORCE_BLOCK)
    assert 29 < wallet.retry_after_sec <= 30
    # brute-force blocks guard auth, wallet, payment only
    assert limiter.decide(EndpointClass.SWIPE, who("x", "9.9.9.9"), NOW).allowed
    client.set(keys.block("ddos", "ip", "9.9.9.9"), "1", px=30_000)
    swipe = limiter.decide(EndpointClass.SWIPE, who("x", "9.9.9.9"), NOW)
    assert (swipe.allowed, swipe.reason) == (False, Reason.IP_BLOCK)


# ------------------------------------------------------------ Redis failures


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("url_kind", ["refused", "hung"])
def test_redis_down_follows_each_class_policy(
    backends: Backends, black_hole: str, url_kind: str
) -> None:
    from shared.errors import BackendUnavailable

    url = "redis://127.0.0.1:1/0" if url_kind == "refused" else black_hole
    broken = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
    limiter = RateLimiter(broken, GeoRules(get_db, first_wait_sec=10))
    for cls in EndpointClass:
        started = time.perf_counter()
        if cls.value in thresholds.RATE_LIMIT_FAIL_CLOSED_CLASSES:
            with pytest.raises(BackendUnavailable):
                limiter.decide(cls, who(), NOW)
        else:
            decision = limiter.decide(cls, who(), NOW)
            assert (decision.allowed, decision.reason) == (True, Reason.REDIS_UNAVAILABLE)
        assert time.perf_counter() - started < 0.5  # tens of milliseconds, never a hang
    assert limiter.failures_total == len(EndpointClass)


def test_recovery_is_automatic_and_failures_are_reported(
    backends: Backends, tmp_path: Path
) -> None:
    """A real outage: the Redis process stops, then comes back empty on the same port
    (so the script must be loaded again: NOSCRIPT is handled)."""
    child, url = datastores.start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=0.5)
    limiter = RateLimiter(client, GeoRules(get_db, first_wait_sec=10))
    try:
        assert limiter.decide(EndpointClass.SWIPE, who(), NOW).reason == Reason.OK
        child.stop()
        for _ in range(3):
            decision = limiter.decide(EndpointClass.SWIPE, who(), NOW)
            assert decision.reason == Reason.REDIS_UNAVAILABLE
        limiter.flush_counters()  # Redis is still down: the counts stay buffered
        child, url = datastores.start_redis(tmp_path, port=port)
        assert limiter.decide(EndpointClass.SWIPE, who(), NOW).reason == Reason.OK
        limiter.flush_counters()
        stats = keys.stats(keys.minute_of(NOW))
        assert client.hget(stats, "redis_fail") == "3"
        assert client.hget(stats, "req:swipe") == "5"  # every request, down or not, counted
        limiter.decide(EndpointClass.SWIPE, who(), NOW)
        limiter.flush_counters()
        assert client.hget(stats, "redis_fail") == "3"  # reported once
    finally:
        child.stop()


TOP_SLOT = 16383
"""The last slot of the top range: a one-slot reshard from its owner moves it, and a
one-slot reshard back from any other primary (all of whose slots are below it) returns it."""


def reshard_one_slot(
    frm: tuple[str, int], to: tuple[str, int], ids: dict[tuple[str, int], str]
) -> None:
    """Move the last slot of ``frm`` to ``to`` (its keys migrate with it)."""
    moved = subprocess.run(
        ["redis-cli", "--cluster", "reshard", f"{frm[0]}:{frm[1]}", "--cluster-from", ids[frm],
         "--cluster-to", ids[to], "--cluster-slots", "1", "--cluster-yes"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stdout + moved.stderr


@pytest.mark.parametrize("redis_backend", ["cluster"], indirect=True)
def test_a_decision_follows_its_slot_to_another_shard(redis_backend: RedisBackend) -> None:
    """Memorystore moves slots when a cluster is scaled: a limiter whose slot map is stale
    follows the redirect (MOVED) and finds the bucket where its keys went. The slot goes
    back at the end: the session's cluster is every later test's too."""
    nodes = {(p.host, p.port): redis.Redis(host=p.host, port=p.port, decode_responses=True)
             for p in redis_backend.client.get_primaries()}  # type: ignore[attr-defined]  # fmt: skip
    try:
        ids = {a: n.execute_command("CLUSTER MYID") for a, n in nodes.items()}  # type: ignore[no-untyped-call]
        rows = next(iter(nodes.values())).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    finally:
        for node in nodes.values():
            node.close()
    source = next((str(r[2][0]), int(r[2][1])) for r in rows if int(r[1]) == TOP_SLOT)
    target = next(address for address in nodes if address != source)
    uid = next(
        f"mover-{i}" for i in range(500_000) if key_slot(f"u:mover-{i}".encode()) == TOP_SLOT
    )
    client = client_for_url(redis_backend.url)
    try:
        limiter = RateLimiter(client, GeoRules(get_db, first_wait_sec=10))
        first = limiter.decide(EndpointClass.WALLET, who(uid), NOW)
        reshard_one_slot(source, target, ids)
        try:
            after = limiter.decide(EndpointClass.WALLET, who(uid), NOW)
        finally:
            reshard_one_slot(target, source, ids)
    finally:
        client.close()
        del client
        # redis-py's cluster client drops the connections of its old slot map after a
        # MOVED without closing them: collect them here, where their ResourceWarning is
        # expected, not at the end of the session
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    assert (first.reason, after.reason) == (Reason.OK, Reason.OK)
    assert after.remaining == first.remaining - 1  # the same bucket, on its new shard
