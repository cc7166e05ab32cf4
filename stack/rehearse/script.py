"""The acts of launch day, in order, with their timings (the full run ends within
about 16 minutes; ``--short`` within about 3).

Tracks run side by side, each a thread playing its acts in order (offsets from the start):

- **probes** (0 s): ``market`` (soft launch of SE with 5 places, 8 verified signups,
  then public), ``brute_force`` (a user's own reports of wallet PIN failures until the
  user is refused, its address untouched; then a trusted backend's reports of
  server-observed failures for distinct accounts from one address until the address is
  blocked), ``rate_limits`` (each class exhausted for a fresh user and address, checked
  at limit + 1; the staff bucket through an ops function; a service principal's own
  bucket; then every callable the server lists, called by a caller whose buckets are
  spent), ``population`` (stack.population's launch-day traffic under every attack, on a
  simulated clock, with a redis-server and a Firestore project of its own);
- **scaling**: media-processing (``SCALED_SERVICE``) first serves a revision taking
  ``service_latency_ms`` per request (so its 3 instances x 8 slots hold 120 RPS:
  capacity is the sandbox's slots, not this box's CPU), ``hold`` (its load at
  ``hold_rps``), ``push`` (``push_rps``,
  past the 65 % target), ``drop`` (``drop_rps`` until the end, long enough for the
  5-minute scale-down stabilisation);
- **deploy** (60 s): ``gates`` (pre-deploy validator for both versions; an unvalidated
  version refused), ``canary_bad`` (chat-service revision debiting a wrong token amount,
  canaried: rolled back by the judge), ``canary_good`` (a clean revision, 5 -> 25 ->
  100 %), with ``bakeSec`` and ``minRequestsPerStep`` shortened (documented
  ``pack391_startDeployment`` parameters), under chat_monetization load;
- **isolation** (after the push): notification-service gets a revision answering
  ``isolation_error_pct`` % 500s at 100 % (a deploy that skipped the canary) under a
  small load until the guard isolates it, then its good revision back;
- **attacks**: ``attack_single`` (one address, ``single_rps``) and
  ``attack_distributed`` (``distributed_addresses`` addresses, ``distributed_rps`` in
  all), unauthenticated callable requests from distinct 127.x.y.z addresses, each
  started at second ``attack_second`` of a minute (recorded with the result);
- **backup** (the end): a backup (``pack391_backupFirestore`` as Cloud Scheduler runs
  it) and a restore drill of it.

The scheduler, the scaling guard, the canary judge and the DDoS detector run as in
production, on their real minutes: nothing here triggers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared import thresholds as t
from stack.faults import StackHandle
from stack.rehearse.load import LoadPool, constant_plan
from stack.rehearse.recording import Act, Recording
from stack.rehearse.timeline import DDOS_MODE_KEY, Recorder, epoch
from stack.scheduler import scheduler_headers
from stack.tokens import emulator_id_token, role_token

log = logging.getLogger("pack391.rehearse")

SCALED_SERVICE = "media-processing"
SCALED_SCENARIO = "live_calls"
CANARY_SERVICE = "chat-service"
ISOLATED_SERVICE = "notification-service"
MARKET_COUNTRY = "SE"


@dataclass(frozen=True)
class Settings:
    """The rehearsal's knobs (``pack391 rehearse --help``); ``short()`` for ``make test``."""

    claims: tuple[str, ...]
    short: bool = False
    service_latency_ms: float = 200.0
    """Each request of the scaled service's serving revision waits this long (a slot held,
    no CPU): 3 instances x 8 slots then hold 120 RPS, whatever else this box runs."""
    hold_rps: float = 40.0
    hold_sec: float = 100.0
    push_rps: float = 110.0
    """92 % of the slots: past the 65 % target (and its 10 % band), short of shedding."""
    push_sec: float = 110.0
    """The breach's minute, the guard's run at its end, and the window after the event."""
    push_second: float = 5.0
    """The push begins at this second of a minute (the guard judges whole minutes: a
    breach late in a minute is seen a minute later; recorded in the claim's detail)."""
    push_past_minute_sec: float | None = None
    """When set (``--short``), the push ends this long into the minute after the one it
    began in (the guard's run at that minute's end is what it waits for), not after
    ``push_sec``."""
    push_gate: str | None = None
    """A file that must exist before the push may begin (``make test``: written when the
    parallel phase's last test is done, so the breach and the guard's minute run on a
    quiet machine while the stack, the hold and the other tracks ran before). The hold
    goes on, in ``GATE_STEP_SEC`` phases, until it exists."""
    push_gate_timeout_sec: float = 1800.0
    push_window_sec: float = 0.0
    """Or up to this much later, when the hold reaches that window anyway (``--short``:
    less waiting for a minute; stack.rehearse.cli.SHORT_DEFAULTS says why the window
    still gives the guard a minute over its target)."""
    drop_rps: float = 15.0
    scale_down_wait_sec: float = 480.0
    chat_rps: float = 30.0
    bake_sec: int = 60
    """``bakeSec`` of each canary step (the spec's default is 300 s)."""
    min_requests_per_step: int = 100
    isolation_error_pct: float = 30.0
    isolation_rps: float = 3.0
    isolation_max_sec: float = 200.0
    single_rps: float = 25.0
    attack_sec: float = 65.0
    distributed_addresses: int = 300
    distributed_rps: float = 90.0
    attack_second: float = 15.0
    canary_max_sec: float = 480.0
    market_limit: int = 5
    market_signups: int = 8

    def wants(self, *claims: str) -> bool:
        return any(c in self.claims for c in claims)


SCALING_CLAIMS = ("scale_up", "scale_down", "no_degradation")
GATE_STEP_SEC = 5.0
"""The hold's phases while it waits for :attr:`Settings.push_gate` (the gate is looked at
between them)."""

DEPLOY_CLAIMS = ("canary_steps", "auto_rollback", "pre_deploy_gates", "rollback_within")


# ------------------------------------------------------------------ calling the stack


@dataclass
class Answer:
    status: str
    """``OK``, the callable error status, or ``UNREACHABLE``."""
    result: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def post(
    url: str, body: Any, headers: dict[str, str], source_ip: str | None = None,
    timeout: float = 60.0,
) -> tuple[int | None, Any]:  # fmt: skip
    """One POST from ``source_ip`` (any 127.x.y.z is this machine); (HTTP status, JSON)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(
        u.hostname or "127.0.0.1", u.port, timeout=timeout,
        source_address=(source_ip, 0) if source_ip else None,
    )  # fmt: skip
    try:
        conn.request(
            "POST", u.path, json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    except (OSError, http.client.HTTPException, ValueError):
        return None, None
    finally:
        conn.close()


class Stack:
    """The callables of the stack, as the app and the operators call them."""

    def __init__(self, handle: StackHandle) -> None:
        self.h = handle
        self.admin = role_token(handle.project, "admin", "rehearsal-admin")
        self.ops = role_token(handle.project, "ops", "rehearsal-ops")

    def url(self, name: str) -> str:
        return f"{self.h.functions_url.rstrip('/')}/{self.h.project}/{self.h.region}/{name}"

    def call(
        self, name: str, data: Any, token: str | None = None, source_ip: str | None = None
    ) -> Answer:
        """A callable; the operators' own calls use the admin token (the staff bucket)."""
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        status, body = post(self.url(name), {"data": data}, headers, source_ip)
        if status is None or not isinstance(body, dict):
            return Answer("UNREACHABLE", message=f"HTTP {status}")
        if isinstance(body.get("error"), dict):
            err = body["error"]
            details = err.get("details") if isinstance(err.get("details"), dict) else {}
            return Answer(str(err.get("status")), {}, details, str(err.get("message", "")))
        result = body.get("result")
        return Answer("OK", result if isinstance(result, dict) else {"value": result})

    def must(self, name: str, data: Any, token: str | None = None) -> dict[str, Any]:
        answer = self.call(name, data, token)
        if answer.status != "OK":
            raise RuntimeError(f"{name}: {answer.status} {answer.message} {answer.details}")
        return answer.result

    def trigger(self, name: str) -> int | None:
        """A scheduled function run now, as Cloud Scheduler runs it (the backup only)."""
        headers = scheduler_headers(name, self.h.region, datetime.now(UTC))
        status, _ = post(self.url(name), {}, headers, timeout=600)
        return status

    def user(self, uid: str, **claims: Any) -> str:
        return emulator_id_token(self.h.project, uid, claims)


# ------------------------------------------------------------------ the run


class Rehearsal:
    def __init__(
        self, handle: StackHandle, settings: Settings, pool: LoadPool, rec: Recording
    ) -> None:
        self.h = handle
        self.s = settings
        self.pool = pool
        self.rec = rec
        self.stack = Stack(handle)
        self.recorder = Recorder(handle, rec)
        self.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self._rng = random.Random(self.run_id)
        # this run's own addresses: a second octet of its own, so an earlier run's blocks
        # (an hour) never meet this one on a long-running stack
        self.octet = self._rng.randrange(10, 250)
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.canary_done = threading.Event()
        self.pushed = threading.Event()
        self.attacks_done = threading.Event()

    def addr(self, c: int, d: int) -> str:
        return f"127.{self.octet}.{c}.{d}"

    @contextlib.contextmanager
    def act(self, name: str, **detail: Any) -> Iterator[Act]:
        a = Act(name, time.time(), None, dict(detail))
        with self._lock:
            self.rec.acts.append(a)
        log.info("act %s begins", name)
        try:
            yield a
        finally:
            a.ended_at = time.time()
            log.info("act %s ends (%.0fs)", name, a.ended_at - a.started_at)

    def _track(self, name: str, body: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                body()
            except Exception as exc:
                log.exception("track %s failed", name)
                with self._lock:
                    self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------ the order

    def play(self) -> None:
        self.wait_for_world()
        self.recorder.start()
        try:
            tracks = [self._track("probes", self.probes)]
            if self.s.wants(*SCALING_CLAIMS):
                tracks.append(self._track("scaling", self.scaling))
            if self.s.wants(*DEPLOY_CLAIMS):
                tracks.append(self._track("deploy", self.deploys))
            if self.s.wants("isolation"):
                tracks.append(self._track("isolation", self.isolation))
            if self.s.wants("ddos_detection"):
                tracks.append(self._track("attacks", self.attacks))
            else:
                self.attacks_done.set()
            for thread in tracks:
                thread.join()
            if self.s.wants("restore_drill"):
                self.backup_and_drill()
        finally:
            self.recorder.stop()
        self.rec.ended_at = time.time()
        self.rec.docs.update(self.recorder.collect())
        for stream, seconds in self.pool.snapshot().items():
            from stack.rehearse.load import series_of

            for name, pts in series_of(stream, seconds).items():
                self.rec.extend(name, pts)
        self.recorder.close()

    def wait_for_world(self, timeout: float = 120.0) -> None:
        """The stack's world is there (``stack.world``): the seven services registered in
        the scaling registry, each serving a revision."""
        import redis

        from shared import collections as c
        from stack.revisions import SERVICES, LocalRevisions

        client = redis.Redis.from_url(self.h.redis_url, decode_responses=True, socket_timeout=5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                registered = {
                    s.id for s in self.recorder.db.collection(c.SCALING_SERVICES).stream()
                }
                revisions = LocalRevisions(client)
                serving = all(revisions.traffic.observe(s, "").shares for s in SERVICES)
                if serving and set(SERVICES) <= registered:
                    return
                time.sleep(2)
        finally:
            client.close()
        raise RuntimeError("the stack's world (registry and serving revisions) never appeared")

    # ------------------------------------------------------------ local platform

    def deploy_revision(self, service: str, **faults: Any) -> str:
        """A revision of ``service`` with ``faults`` on the local platform, landed as
        ``firebase deploy`` lands a function's: serving 100 % at once (the canary that
        follows takes it back to 5 %, its stable side from ``pack391_pinTraffic``'s
        snapshot)."""
        import redis

        from stack.revisions import LocalRevisions, RevisionFaults

        client = redis.Redis.from_url(self.h.redis_url, decode_responses=True, socket_timeout=5)
        try:
            revisions = LocalRevisions(client)
            rev = revisions.deploy(service, faults=RevisionFaults(**faults))
            return rev
        finally:
            client.close()

    def serve_only(self, service: str, rev: str) -> None:
        import redis

        from stack.revisions import LocalRevisions

        client = redis.Redis.from_url(self.h.redis_url, decode_responses=True, socket_timeout=5)
        try:
            LocalRevisions(client).traffic.apply(service, "", {rev: 100})
        finally:
            client.close()

    def serving(self, service: str) -> str:
        import redis

        from stack.revisions import LocalRevisions

        client = redis.Redis.from_url(self.h.redis_url, decode_responses=True, socket_timeout=5)
        try:
            shares = LocalRevisions(client).traffic.observe(service, "").shares
        finally:
            client.close()
        return max(shares, key=lambda r: shares[r])

    # ------------------------------------------------------------ probes

    def probes(self) -> None:
        if self.s.wants("market_rollout"):
            self.market()
        if self.s.wants("brute_force"):
            self.brute_force()
        if self.s.wants("population"):
            self.population()
        if self.s.wants("rate_limits"):
            # after the attacks: spending every bucket is traffic the detector keeps in its
            # baseline, and DDoS mode's blast radius (how much usual traffic halved limits
            # would deny) must be judged on launch-day traffic, not on this probe
            self.attacks_done.wait(timeout=1200)
            self.rate_limits()

    def market(self) -> None:
        s = self.stack
        country, limit = MARKET_COUNTRY, self.s.market_limit
        with self.act("market", country=country, trafficLimit=limit):
            baseline = s.must("pack391_getMarketControls", {"country": country}, s.ops)
            known = _market_users(baseline, country)
            s.must("pack391_updateMarketControl", {
                "country": country,
                "config": {"launchStatus": "soft_launch", "trafficLimit": known + limit},
                "reason": f"launch rehearsal {self.run_id}: soft launch",
            })  # fmt: skip
            answers = []
            for i in range(self.s.market_signups):
                uid = f"rh-{self.run_id}-{country}-{i}"
                a = s.call("pack391_checkMarketAccess", {"country": country, "signup": True},
                           s.user(uid, email_verified=True))  # fmt: skip
                answers.append({"uid": uid, "status": a.status,
                                "admitted": bool(a.result.get("signupAdmitted")),
                                "reason": a.result.get("reason")})  # fmt: skip
            s.must("pack391_updateMarketControl", {
                "country": country, "config": {"launchStatus": "public"},
                "reason": f"launch rehearsal {self.run_id}: public",
            })  # fmt: skip
            late = s.call("pack391_checkMarketAccess", {"country": country, "signup": True},
                          s.user(f"rh-{self.run_id}-{country}-public",
                                 email_verified=True))  # fmt: skip
            final = s.must("pack391_getMarketControls", {"country": country}, s.ops)
        self.rec.docs["market"] = {
            "country": country,
            "trafficLimit": limit,
            "signups": len(answers),
            "admitted": sum(1 for a in answers if a["admitted"]),
            "answers": answers,
            "finalStatus": _market_status(final, country),
            "publicAdmits": bool(late.result.get("signupAdmitted")),
        }

    def brute_force(self) -> None:
        s = self.stack
        uid, ip = f"rh-{self.run_id}-bf", self.addr(0, 66)
        token = s.user(uid)
        attempts = []
        stuffing = []
        with self.act("brute_force", uid=uid, address=ip):
            # a user's own reports block the user, never the address behind it
            for n in range(1, t.BRUTE_FORCE_MAX_FAILURES_COUNT + 3):
                a = s.call("pack391_walletBruteForceShield", {"attempt": "failure"}, token, ip)
                blocked = bool(a.result.get("blocked")) or a.status == "RESOURCE_EXHAUSTED"
                attempts.append({"n": n, "status": a.status, "blocked": blocked,
                                 "reason": a.details.get("reason") or a.result.get("reason"),
                                 "attemptsLeft": a.result.get("attemptsLeft")})  # fmt: skip
            neighbour = s.call(
                "pack391_checkRateLimit", {"endpointClass": "wallet"},
                s.user(f"{uid}-neighbour"), ip,
            )  # fmt: skip
            # credential stuffing: failures a backend saw, one per account, from one address
            backend = role_token(self.h.project, "service", f"rh-{self.run_id}-backend")
            victim_ip = self.addr(0, 67)
            for n in range(1, t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS + 2):
                a = s.call(
                    "pack391_recordAuthFailure",
                    {"kind": "auth", "ip": victim_ip, "account": f"login-{n}"},
                    backend, self.addr(0, 68),
                )  # fmt: skip
                blocked = bool(a.result.get("blocked"))
                stuffing.append({"n": n, "status": a.status, "blocked": blocked})
            time.sleep(1.5)  # the blocks' Firestore mirrors
        self.rec.docs["bruteForce"] = {
            "uid": uid, "address": ip, "attempts": attempts,
            "neighbourAllowed": neighbour.result.get("allowed"),
            "stuffingAddress": victim_ip, "stuffing": stuffing,
            "blocks": self.recorder.blocks({uid, ip, victim_ip}),
        }  # fmt: skip

    def population(self) -> None:
        """Launch-day traffic under every attack of issue 21 (:mod:`stack.population`), on a
        simulated clock, against a redis-server of its own and a project of its own in the
        stack's Firestore emulator: its blocks, lockdowns and alerts must not touch the
        stack the other acts judge."""
        import tempfile
        from pathlib import Path

        import redis

        from stack import procs
        from stack.population import ATTACKS, Population, PopulationConfig, rows_json

        project = f"demo-pack391-population-{self.run_id}"
        log_dir = Path(tempfile.mkdtemp(prefix="pack391-rehearse-population-"))
        with self.act("population", project=project):
            child, url = procs.start_redis(log_dir)
            client = redis.Redis.from_url(url, decode_responses=True)
            db = procs.firestore_client(self.h.firestore_host, project)
            try:

                def reset() -> None:
                    client.flushall()
                    procs.wipe_firestore(self.h.firestore_host, project)

                rows = Population(client, db, PopulationConfig.small(), reset).run_all(
                    list(ATTACKS)
                )
            finally:
                client.close()
                procs.forget_wipe_connection(self.h.firestore_host)
                child.stop()
        self.rec.docs["population"] = rows_json(rows)

    def rate_limits(self) -> None:
        """Each class spent for a fresh user and address: the first denial must come at
        limit + 1 (plus what GCRA refilled while the probe ran); then every callable."""
        s = self.stack
        classes = []
        with self.act("rate_limits"):
            users = (k for k in t.RATE_LIMIT_PER_MIN if k not in ("staff", "service"))
            for i, cls in enumerate(users):
                uid, ip = f"rh-{self.run_id}-rl-{cls}", self.addr(1, 10 + i)
                token = s.user(uid)
                probe = functools.partial(
                    s.call, "pack391_checkRateLimit", {"endpointClass": cls}, token, ip
                )
                classes.append(self._probe_class(cls, probe))
            # a trusted service's own calls: per principal, never by its egress address
            backend = role_token(self.h.project, "service", f"rh-{self.run_id}-svc")
            classes.append(self._probe_class("service", functools.partial(
                s.call, "pack391_checkRateLimit", {"endpointClass": "general"}, backend,
                self.addr(2, 9),
            )))  # fmt: skip
            # staff: ops and admin callers of ops and admin functions, per user, any address
            staff = role_token(self.h.project, "admin", f"rh-{self.run_id}-staff")
            addresses = [self.addr(2, k) for k in range(1, 6)]
            n = iter(range(10**9))
            classes.append(self._probe_class(
                "staff", lambda: s.call("pack391_getLiveMetrics", {}, staff,
                                        addresses[next(n) % len(addresses)]),
            ))  # fmt: skip
            endpoints = self._every_endpoint_limited()
        self.rec.docs["rateLimits"] = {"classes": classes, "endpoints": endpoints}

    def _probe_class(self, cls: str, call: Callable[[], Answer]) -> dict[str, Any]:
        limit = t.RATE_LIMIT_PER_MIN[cls]
        # DDoS mode (left on by an attack) halves every class but staff: recorded with the
        # probe so the claim expects the limit that applied
        mode = self.recorder.redis.exists(DDOS_MODE_KEY) > 0
        began = time.monotonic()
        probe: dict[str, Any] = {"class": cls, "limit": limit, "ddosMode": mode,
                                 "deniedAt": None, "retryAfterSec": None}  # fmt: skip
        for n in range(1, 3 * limit + 2):
            a = call()
            if a.status == "RESOURCE_EXHAUSTED" or a.result.get("allowed") is False:
                retry = a.result.get("retryAfterSec", a.details.get("retryAfterSec"))
                probe |= {"deniedAt": n, "retryAfterSec": retry}
                break
        return probe | {"elapsedSec": round(time.monotonic() - began, 3)}

    def _every_endpoint_limited(self, rounds: int = 3) -> list[dict[str, Any]]:
        """Every callable the server lists, called while its caller's buckets are kept
        spent: a user whose every class is spent, and, for the ops and admin functions
        (``PERMISSION_DENIED`` to a user), a staff caller whose staff bucket is spent.

        Two "saturator" threads keep spending the caller's buckets (per user: from
        addresses of their own, none near the single-source threshold) while the targets
        are called one at a time, so a token GCRA refills goes to the saturators, not to a
        target (a refilled token is rarely won by a target; one that is, is tried again)."""
        s = self.stack
        _, listing = _get_json(self.h.functions_url.rstrip("/") + "/__/functions")
        names = sorted(
            n for n, info in (listing or {}).get("functions", {}).items()
            if info.get("trigger") == "callable"
        )  # fmt: skip
        user, user_ip = s.user(f"rh-{self.run_id}-rl-all"), self.addr(3, 1)
        staff = role_token(self.h.project, "admin", f"rh-{self.run_id}-rl-staff")
        backend = role_token(self.h.project, "service", f"rh-{self.run_id}-rl-svc")
        burst_ips = [self.addr(3, k) for k in range(20, 44)]
        user_classes = [c for c in t.RATE_LIMIT_PER_MIN if c not in ("staff", "service")]
        rows: dict[str, dict[str, Any]] = {}

        def spend_user(i: int) -> tuple[str, Answer]:
            cls = user_classes[i % len(user_classes)]
            ip = burst_ips[i % len(burst_ips)]
            return cls, s.call("pack391_checkRateLimit", {"endpointClass": cls}, user, ip)

        def spend_staff(i: int) -> tuple[str, Answer]:
            ip = burst_ips[i % len(burst_ips)]
            return "staff", s.call("pack391_getLiveMetrics", {}, staff, ip)

        def spend_service(i: int) -> tuple[str, Answer]:
            ip = burst_ips[i % len(burst_ips)]
            answer = s.call("pack391_checkRateLimit", {"endpointClass": "general"}, backend, ip)
            return "service", answer

        def sweep(
            targets: list[str], spend: Callable[[int], tuple[str, Answer]], token: str,
            who: str, classes: int,
        ) -> None:  # fmt: skip
            stop = threading.Event()
            spent = threading.Event()
            denied: set[str] = set()
            counter = iter(range(10**9))
            lock = threading.Lock()

            def saturate() -> None:
                while not stop.is_set():
                    with lock:
                        i = next(counter)
                    cls, a = spend(i)
                    if a.status == "RESOURCE_EXHAUSTED" or a.result.get("allowed") is False:
                        with lock:
                            denied.add(cls)
                            if len(denied) >= classes:  # every class of the caller spent
                                spent.set()

            threads = [threading.Thread(target=saturate, daemon=True) for _ in range(2)]
            for th in threads:
                th.start()
            try:
                spent.wait(120)
                for name in targets:
                    a = s.call(name, _probe_data(name), token, user_ip)
                    limited = a.status == "RESOURCE_EXHAUSTED" or a.result.get("allowed") is False
                    rows[name] = {
                        "name": name, "as": who,
                        "status": "RESOURCE_EXHAUSTED" if limited else a.status,
                        "answer": a.status if a.status != "OK"
                        else f"allowed={a.result.get('allowed')}",
                        "reason": a.details.get("reason") or a.result.get("reason"),
                    }  # fmt: skip
            finally:
                stop.set()
                for th in threads:
                    th.join(30)

        todo = list(names)
        as_staff: set[str] = set()
        as_service: set[str] = set()
        for _ in range(rounds):
            users = [n for n in todo if n not in as_staff and n not in as_service]
            if users:
                sweep(users, spend_user, user, "user", len(user_classes))
                as_staff |= {n for n in users if rows[n]["answer"] == "PERMISSION_DENIED"}
            staffs = [n for n in todo if n in as_staff and n not in as_service]
            if staffs:
                sweep(staffs, spend_staff, staff, "staff", 1)
                as_service |= {n for n in staffs if rows[n]["answer"] == "PERMISSION_DENIED"}
            services = [n for n in todo if n in as_service]
            if services:
                sweep(services, spend_service, backend, "service", 1)
            todo = [n for n in names if rows.get(n, {}).get("status") != "RESOURCE_EXHAUSTED"]
            if not todo:
                break
        return [rows.get(n, {"name": n, "status": None}) for n in names]

    # ------------------------------------------------------------ scaling

    def scaling(self) -> None:
        s = self.s
        self.slow_rev = self.deploy_revision(SCALED_SERVICE, latency_ms=s.service_latency_ms)
        with self.act(
            "hold", service=SCALED_SERVICE, rps=s.hold_rps, revision=self.slow_rev
        ) as act:
            if s.push_gate is not None:
                act.detail["gateWaitSec"] = self._hold_until_gate(s.push_gate)
            # the hold ends (and the push begins) at second push_second of a minute, or
            # within push_window_sec after it
            second = (time.time() + 1 + s.hold_sec) % 60
            late = second - s.push_second
            hold_sec = s.hold_sec + (0.0 if 0 <= late <= s.push_window_sec else (-late) % 60)
            self._phase("hold", s.hold_rps, hold_sec)
        with self.act("push", service=SCALED_SERVICE, rps=s.push_rps):
            push_sec = s.push_sec
            if s.push_past_minute_sec is not None:
                push_sec = 60.0 - time.time() % 60 + s.push_past_minute_sec
            self._phase("push", s.push_rps, push_sec)
        self.pushed.set()
        if not s.wants("scale_down", "no_degradation"):
            return
        with self.act("drop", service=SCALED_SERVICE, rps=s.drop_rps) as act:
            before = self.rec.value_at(f"applied.{SCALED_SERVICE}", time.time())
            deadline = time.time() + (s.scale_down_wait_sec if s.wants("scale_down") else 60.0)
            after_down = None
            while time.time() < deadline and (after_down is None or time.time() < after_down):
                self._phase(f"drop-{int(time.time())}", s.drop_rps, 30)
                now = self.rec.value_at(f"applied.{SCALED_SERVICE}", time.time())
                if after_down is None and before and now and now < before:
                    after_down = time.time() + 30  # the window after the scale-down
            act.detail["scaledDown"] = after_down is not None

    def _hold_until_gate(self, gate: str) -> float:
        """Hold (phases of ``GATE_STEP_SEC``) until ``gate`` exists; the seconds waited."""
        began = time.time()
        while not os.path.exists(gate):
            if time.time() - began > self.s.push_gate_timeout_sec:
                raise RuntimeError(
                    f"the push gate {gate} did not open within {self.s.push_gate_timeout_sec:.0f}s"
                )
            self._phase(f"hold-{int(time.time())}", self.s.hold_rps, GATE_STEP_SEC)
        return round(time.time() - began, 1)

    def _phase(self, name: str, rps: float, seconds: float) -> None:
        """``rps`` of the scaled service's scenario for ``seconds``, run to its end (never
        aborted: an abort cancels requests in flight, which the sandbox counts as 5xx)."""
        plan = constant_plan(SCALED_SCENARIO, self.h.sandbox_url, rps, max(1, round(seconds)))
        run = f"{self.run_id}-{name}"
        begin = self.pool.run("load", run, plan, time.time() + 0.2)
        self.pool.wait(run, begin - time.time() + seconds + 30)

    # ------------------------------------------------------------ deploys

    def deploys(self) -> None:
        s = self.stack
        chat_stop = threading.Event()
        chat = threading.Thread(target=self._chat_load, args=(chat_stop,), daemon=True)
        chat.start()
        try:
            stable = self.serving(CANARY_SERVICE)
            bad_version, good_version = f"v{self.run_id}-bad", f"v{self.run_id}-good"
            with self.act("gates", versions=[good_version, bad_version]):
                unvalidated = s.call("pack391_startDeployment", {
                    "version": f"v{self.run_id}-unvalidated", "environment": "rehearsal-bad",
                    "strategy": "canary", "services": [CANARY_SERVICE],
                })  # fmt: skip
                report = s.must(
                    "pack391_preDeployValidator",
                    {"version": good_version, "environment": "rehearsal-good"},
                )
                s.must("pack391_preDeployValidator",
                       {"version": bad_version, "environment": "rehearsal-bad"})  # fmt: skip
            self.rec.docs["gates"] = {
                "report": {"reportId": report.get("reportId"), "passed": report.get("passed"),
                           "gates": [{"name": g.get("name"), "status": g.get("status")}
                                     for g in report.get("gates", [])]},
                "unvalidatedStart": {"status": unvalidated.status, "message": unvalidated.message},
            }  # fmt: skip
            # the pipeline's order: pin-traffic (the snapshot), firebase deploy (the new
            # revision at 100 %), start at once; the claim counts from the deploy
            bad_rev = self._land(stable, "bad", "rehearsal-bad", token_mismatch=True)
            with self.act("canary_bad", service=CANARY_SERVICE, revision=bad_rev, stable=stable):
                self._canary("bad", bad_version, "rehearsal-bad")
            self.serve_only(CANARY_SERVICE, stable)
            good_rev = self._land(stable, "good", "rehearsal-good")
            with self.act("canary_good", service=CANARY_SERVICE, revision=good_rev):
                self._canary("good", good_version, "rehearsal-good")
        finally:
            chat_stop.set()
            self.canary_done.set()
            chat.join(120)

    def _land(self, stable: str, label: str, env: str, **faults: Any) -> str:
        """``pack391_pinTraffic`` then the deploy: the revision serves what the platform
        gives it (100 %), recorded on ``canary.<label>`` from that moment."""
        pinned = self.stack.must(
            "pack391_pinTraffic", {"environment": env, "services": [CANARY_SERVICE]}
        )
        if [p.get("revision") for p in pinned.get("pinned", [])] != [stable]:
            raise RuntimeError(f"pin-traffic pinned {pinned}, not {stable}")
        rev = self.deploy_revision(CANARY_SERVICE, **faults)
        self.recorder.add(f"canary.{label}", time.time(), 100.0)
        return rev

    def _chat_load(self, stop: threading.Event) -> None:
        """chat_monetization in 30 s phases, each run to its end, until ``stop``."""
        while not stop.is_set():
            plan = constant_plan("chat_monetization", self.h.sandbox_url, self.s.chat_rps, 30)
            run = f"{self.run_id}-chat-{int(time.time())}"
            begin = self.pool.run("chat", run, plan, time.time() + 0.2)
            self.pool.wait(run, begin - time.time() + 60)

    def _canary(self, label: str, version: str, env: str) -> None:
        s = self.stack
        started = s.must("pack391_startDeployment", {
            "version": version, "environment": env, "strategy": "canary",
            "services": [CANARY_SERVICE], "bakeSec": self.s.bake_sec,
            "minRequestsPerStep": self.s.min_requests_per_step,
        })  # fmt: skip
        dep_id = str(started["deploymentId"])
        self.recorder.watch_deployment(label, dep_id)
        deadline = time.time() + self.s.canary_max_sec
        while time.time() < deadline:
            st = s.call("pack391_getDeploymentStatus", {"deploymentId": dep_id}, s.ops)
            phase = st.result.get("phase")
            if phase in ("succeeded", "rolled_back", "failed", "paused"):
                time.sleep(3 * 2)  # two more samples of the final split
                return
            time.sleep(3)

    # ------------------------------------------------------------ isolation

    def isolation(self) -> None:
        self.pushed.wait(timeout=600)
        stable = self.serving(ISOLATED_SERVICE)
        rev = self.deploy_revision(ISOLATED_SERVICE, error_pct=self.s.isolation_error_pct)
        stop = threading.Event()
        with self.act("isolate", service=ISOLATED_SERVICE, revision=rev,
                      errorPct=self.s.isolation_error_pct) as act:  # fmt: skip
            sender = threading.Thread(target=self._notify_load, args=(stop,), daemon=True)
            sender.start()
            deadline = time.time() + self.s.isolation_max_sec
            while time.time() < deadline:
                if (
                    self.recorder.rec.value_at(f"isolated.{ISOLATED_SERVICE}", time.time()) or 0
                ) > 0:
                    act.detail["isolatedSeen"] = True
                    break
                time.sleep(2)
            stop.set()
            sender.join(10)
        self.serve_only(ISOLATED_SERVICE, stable)

    def _notify_load(self, stop: threading.Event) -> None:
        url = self.h.sandbox_url.rstrip("/") + "/notification/send"
        i = 0
        while not stop.is_set():
            body = {"uid": f"u{i % 50}", "text": "hello", "loadRunId": f"{self.run_id}-iso"}
            post(url, body, {}, timeout=10)
            i += 1
            stop.wait(1.0 / self.s.isolation_rps)

    # ------------------------------------------------------------ attacks

    def attacks(self) -> None:
        try:
            self._attacks()
        finally:
            self.attacks_done.set()

    def _attacks(self) -> None:
        if self.s.wants(*DEPLOY_CLAIMS):
            self.canary_done.wait(timeout=900)
        self._at_second(self.s.attack_second)
        single = self.addr(200, 9)
        self.rec.add("attack.rps", time.time(), 0.0)
        with self.act("attack_single", kind="single_source_flood", address=single,
                      rps=self.s.single_rps):  # fmt: skip
            self.rec.add("attack.rps", time.time(), self.s.single_rps)
            asyncio.run(self._flood([single], self.s.single_rps, self.s.attack_sec))
            self.rec.add("attack.rps", time.time(), 0.0)
        time.sleep(20)
        self._at_second(self.s.attack_second)
        many = [self.addr(210 + i // 250, 1 + i % 250) for i in range(self.s.distributed_addresses)]
        with self.act("attack_distributed", kind="distributed_attack", addresses=len(many),
                      rps=self.s.distributed_rps):  # fmt: skip
            self.rec.add("attack.rps", time.time(), self.s.distributed_rps)
            asyncio.run(self._flood(many, self.s.distributed_rps, self.s.attack_sec))
            self.rec.add("attack.rps", time.time(), 0.0)

    @staticmethod
    def _at_second(second: float) -> None:
        """Wait for the next time the clock shows ``second`` past a minute."""
        now = time.time()
        wait = (second - now % 60) % 60
        time.sleep(wait)

    async def _flood(self, addresses: list[str], rps: float, seconds: float) -> None:
        """Unauthenticated callable requests, round-robin over ``addresses``, open model."""
        url = self.stack.url("pack391_checkRateLimit")
        sessions = {
            ip: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(ip, 0), force_close=True),
                timeout=aiohttp.ClientTimeout(total=10),
            )
            for ip in addresses
        }
        tasks: set[asyncio.Task[None]] = set()

        async def one(ip: str) -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with sessions[ip].post(url, json={"data": {"endpointClass": "general"}}) as r:
                    await r.read()

        try:
            t0 = time.time()
            n = 0
            while True:
                due = t0 + n / rps
                if due >= t0 + seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.time()))
                if len(tasks) < 400:
                    task = asyncio.ensure_future(one(addresses[n % len(addresses)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.wait(set(tasks), timeout=10)
        finally:
            for session in sessions.values():
                await session.close()

    # ------------------------------------------------------------ backup

    def backup_and_drill(self) -> None:
        s = self.stack
        from shared import collections as c

        with self.act("backup"):
            status = s.trigger("pack391_backupFirestore")
            latest = [
                (snap.id, snap.to_dict() or {})
                for snap in self.recorder.db.collection(c.BACKUPS).stream()
            ]
            mine = [
                b
                for b in latest
                if (epoch((b[1]).get("startedAt") or b[1].get("snapshotTime")) or 0)
                >= self.rec.started_at - 120
            ]
            pick = max(
                mine or latest, key=lambda b: epoch(b[1].get("snapshotTime")) or 0, default=None
            )
        backup = {"backupId": pick[0] if pick else None,
                  "status": (pick[1].get("status") if pick else None),
                  "httpStatus": status,
                  "documentCount": pick[1].get("documentCount") if pick else None}  # fmt: skip
        self.rec.docs["backup"] = backup
        with self.act("drill", backupId=backup["backupId"]):
            a = s.call("pack391_restoreDrill", {"backupId": backup["backupId"],
                                                "reason": f"launch rehearsal {self.run_id}"},
                       )  # fmt: skip
        r = a.result
        self.rec.docs["drill"] = {
            "status": a.status, "message": a.message, "drillId": r.get("drillId"),
            "ok": r.get("ok"), "durationSec": r.get("durationSec"),
            "documents": r.get("documents"), "withinRto": r.get("withinRto"),
        }  # fmt: skip


def _probe_data(name: str) -> dict[str, Any]:
    """What an endpoint is called with by the sweep: nothing, except the rate-limit check
    itself, whose class is its argument (it answers INVALID_ARGUMENT before counting)."""
    return {"endpointClass": "general"} if name == "pack391_checkRateLimit" else {}


def _get_json(url: str) -> tuple[int | None, Any]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        conn.request("GET", u.path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None, None
    finally:
        conn.close()


def _market_entry(controls: dict[str, Any], country: str) -> dict[str, Any]:
    for m in controls.get("markets", []) or []:
        if isinstance(m, dict) and m.get("country") == country:
            return m
    return controls if controls.get("country") == country else {}


def _market_users(controls: dict[str, Any], country: str) -> int:
    return int(_market_entry(controls, country).get("currentUsers") or 0)


def _market_status(controls: dict[str, Any], country: str) -> str | None:
    entry = _market_entry(controls, country)
    config = entry.get("config") if isinstance(entry.get("config"), dict) else entry
    status = config.get("launchStatus") if isinstance(config, dict) else None
    return None if status is None else str(status)
