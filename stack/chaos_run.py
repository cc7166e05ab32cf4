"""``pack391 chaos-run``: apply each fault of ``stack/faults.py`` during a load run and
check the invariants over the recorded history.

For each fault, one scenario of ``before + during + after`` seconds runs against the
local stack (``pack391 serve``):

- ``swipe_load`` against the sandbox, open model (starts on schedule whatever the
  target does, the mix and payloads of ``functions/load/scenarios.py``);
- market signups (verified tokens, distinct uids) in a soft-launch market of its own
  (a country per fault) with a small ``trafficLimit``;
- ``pack391_walletBruteForceShield`` attempts and ``pack391_checkRateLimit`` for the
  auth, wallet, payment, swipe and general classes;
- the scale guard, the deploy monitor and live metrics, triggered as Cloud Scheduler
  does, once while the fault is on and again after it is undone until a run completes.

Every request is recorded (op, class, start, end, HTTP status, error status, reason,
retryAfterSec, the answer's fields). After the ``after`` phase the runner triggers
``pack391_syncMarkets``, reads each market's admissions from Firestore and its member
set from Redis, reads the jobs' records, and runs the checkers of
``stack/chaos_check.py``. The report (``.local/chaos/report.json``, and a table on
stdout) gives, per fault, requests by outcome before/during/after, the time to
recovery, and each invariant held or broken with its first counterexample. Exit 1 when
an invariant breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from functions.load.scenarios import ENDPOINTS, MIXES, pick_endpoint
from stack import chaos_check as cc
from stack import faults, procs
from stack.faults import FaultError, StackHandle
from stack.procs import free_port
from stack.scheduler import scheduler_headers
from stack.tokens import emulator_id_token, role_token

SOURCE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_OUT = SOURCE_DIR / ".local" / "chaos"

ALL_FAULTS = (
    "redis-kill",
    "redis-pause",
    "redis-slow",
    "firestore-pause",
    "functions-kill",
    "sandbox-errors",
)
"""The faults of ``stack/faults.py`` (``faults.FAULTS``), in the order ``make chaos`` runs them."""

COUNTRIES = {
    "redis-kill": "PL",
    "redis-pause": "DE",
    "redis-slow": "FR",
    "firestore-pause": "ES",
    "functions-kill": "IT",
    "sandbox-errors": "PT",
}
"""One soft-launch market per fault, so each scenario's admissions are its own."""

RATE_CLASSES = ("auth", "wallet", "payment", "swipe", "general")
JOBS = ("pack391_scaleGuard", "pack391_monitorDeployment", "pack391_updateLiveMetrics")
SYNC_JOB = "pack391_syncMarkets"

RECOVERY_BUDGET_SEC = {"functions-kill": 30.0}
"""Seconds after the undo within which rate-limit decisions must be normal again; the
default (:attr:`ChaosConfig.recovery_budget_sec`) for the Redis faults. A killed
functions server is restarted by the supervisor and re-imports every function."""


@dataclass(frozen=True)
class ChaosConfig:
    faults: tuple[str, ...] = ALL_FAULTS
    before_sec: float = 3.0
    during_sec: float = 8.0
    after_sec: float = 12.0
    swipe_rps: float = 100.0
    """Open-model swipe_load rate against the sandbox (what this 2-core box holds with
    every child running: docs/chaos.md)."""
    ratelimit_rps: float = 5.0
    """checkRateLimit calls per second, round-robin over :data:`RATE_CLASSES` (kept
    under the single-source flood threshold, 600/min from one address, with the rest)."""
    wallet_rps: float = 1.0
    signup_rps: float = 2.0
    traffic_limit: int = 10
    """Places of each fault's market beyond those it already had."""
    request_timeout_sec: float = 20.0
    swipe_timeout_sec: float = 10.0
    swipe_max_in_flight: int = 256
    recovery_budget_sec: float = 10.0
    latency_budget_ms: float = 500.0
    """p99 of checkRateLimit while Firestore is stalled: a decision is one Redis round
    trip, geo rules are cached in memory (30 s) and refreshed without blocking past
    ``PACK391_REDIS_TIMEOUT_MS``, so Firestore is not on its path."""
    fault_options: dict[str, dict[str, float]] = field(default_factory=dict)
    out_dir: Path = DEFAULT_OUT


# ------------------------------------------------------------------ the stack


@contextlib.contextmanager
def serve_stack(
    log_dir: Path, state_path: Path, timeout_sec: float = 180.0
) -> Iterator[StackHandle]:
    """Start ``pack391 serve`` on free ports (state in ``state_path``); yield its
    ``StackHandle``; stop it (SIGTERM, then SIGKILL) on exit."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL", "GCLOUD_PROJECT")
    }
    env.update(
        # the stack as `make run` runs it (the tests' own process turns the fast canary
        # judge's timers off; a served stack keeps them)
        PACK391_CANARY_FAST_JUDGE="true",
        PACK391_PORT=str(free_port()),
        PACK391_SANDBOX_PORT=str(free_port()),
        PACK391_STACK_STATE=str(state_path),
    )
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()
    pack391 = Path(sys.executable).with_name("pack391")
    process = subprocess.Popen(
        [str(pack391), "serve", "--log-dir", str(log_dir)],
        cwd=SOURCE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_sec
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "ready" in line:
                break
        if not any("ready" in line for line in lines):
            raise RuntimeError("pack391 serve did not become ready:\n" + "".join(lines[-40:]))
        # keep draining its output so the supervisor never blocks on a full pipe
        threading.Thread(target=_drain_pipe, args=(process.stdout,), daemon=True).start()
        while not state_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield StackHandle.load(state_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            with contextlib.suppress(ValueError, OSError):
                process.stdout.close()


def _drain_pipe(pipe: Any) -> None:
    with contextlib.suppress(ValueError, OSError):
        for _ in pipe:
            pass


# ------------------------------------------------------------------ the load


def _now() -> float:
    return time.time()


class Recorder:
    """Makes the requests of one scenario and records each as a :class:`chaos_check.Call`."""

    def __init__(self, handle: StackHandle, config: ChaosConfig, run_id: str) -> None:
        self.h = handle
        self.config = config
        self.run_id = run_id
        self.history: list[cc.Call] = []
        self.swipe_dropped = 0
        self.swipe_scheduled = 0
        self._in_flight_swipes = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rng = random.Random(run_id)
        self._admin = role_token(handle.project, "admin", "chaos-admin")

    def url(self, name: str) -> str:
        return f"{self.h.functions_url.rstrip('/')}/{self.h.project}/{self.h.region}/{name}"

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()

    async def call(
        self,
        session: aiohttp.ClientSession,
        op: str,
        cls: str,
        name: str,
        data: Any,
        token: str,
        uid: str | None = None,
        keep: Sequence[str] = (),
    ) -> cc.Call:
        """One callable request, recorded."""
        start = _now()
        http: int | None = None
        error = reason = None
        retry: float | None = None
        result: dict[str, Any] = {}
        try:
            async with session.post(
                self.url(name),
                json={"data": data},
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_sec),
            ) as response:
                http = response.status
                try:
                    body = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
        except TimeoutError:
            error, body = "timeout", None
        except aiohttp.ClientError:
            error, body = "connection", None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            error = str(err.get("status"))
            details = err.get("details") if isinstance(err.get("details"), dict) else {}
            reason = details.get("reason")
            retry = details.get("retryAfterSec")
        elif isinstance(body, dict) and isinstance(body.get("result"), dict):
            res = body["result"]
            reason = res.get("reason")
            retry = res.get("retryAfterSec")
            result = {k: res.get(k) for k in keep if k in res}
        elif http is not None and error is None and http != 200:
            error = None  # a non-protocol answer: recorded by its HTTP status
        recorded = cc.Call(op, cls, start, _now(), http, error, reason, retry, result, uid)
        self.history.append(recorded)
        return recorded

    async def job(self, session: aiohttp.ClientSession, name: str, timeout: float) -> cc.Call:
        """Run a scheduled function now, as Cloud Scheduler does; recorded."""
        start = _now()
        http: int | None = None
        error = None
        try:
            async with session.post(
                self.url(name),
                data=b"{}",
                headers=scheduler_headers(name, self.h.region, datetime.now(UTC)),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                http = response.status
                await response.read()
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError:
            error = "connection"
        recorded = cc.Call("job", name, start, _now(), http, error)
        self.history.append(recorded)
        return recorded

    async def swipe(self, session: aiohttp.ClientSession, index: int) -> None:
        name = pick_endpoint(MIXES["swipe_load"], index)
        endpoint = ENDPOINTS[name]
        body = endpoint.payload(self._rng, self.run_id, index) | {"loadRunId": self.run_id}
        start = _now()
        http: int | None = None
        error = None
        self._in_flight_swipes += 1
        try:
            async with session.request(
                endpoint.method,
                self.h.sandbox_url.rstrip("/") + endpoint.path,
                json=body,
                timeout=aiohttp.ClientTimeout(total=self.config.swipe_timeout_sec),
            ) as response:
                http = response.status
                await response.read()
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError:
            error = "connection"
        finally:
            self._in_flight_swipes -= 1
        self.history.append(cc.Call("swipe", name, start, _now(), http, error))

    # ------------------------------------------------------------ generators

    async def open_model(self, rate: float, until: float, fire: Any) -> None:
        """Start ``fire(index)`` at ``rate`` per second until ``until`` (wall clock),
        on schedule whatever the target does."""
        if rate <= 0:
            return
        t0 = _now()
        index = 0
        while True:
            due = t0 + index / rate
            if due >= until:
                return
            delay = due - _now()
            if delay > 0:
                await asyncio.sleep(delay)
            fire(index)
            index += 1

    async def load(self, session: aiohttp.ClientSession, country: str, until: float) -> None:
        user_tokens = {
            i: emulator_id_token(self.h.project, f"chaos-{self.run_id}-rl{i}", {})
            for i in range(20)
        }

        def fire_swipe(i: int) -> None:
            self.swipe_scheduled += 1
            if self._in_flight_swipes >= self.config.swipe_max_in_flight:
                self.swipe_dropped += 1
                return
            self.spawn(self.swipe(session, i))

        def fire_rate(i: int) -> None:
            cls = RATE_CLASSES[i % len(RATE_CLASSES)]
            self.spawn(
                self.call(
                    session, "ratelimit", cls, "pack391_checkRateLimit", {"endpointClass": cls},
                    user_tokens[i % len(user_tokens)], keep=("allowed", "limit", "remaining"),
                )
            )  # fmt: skip

        def fire_wallet(i: int) -> None:
            self.spawn(
                self.call(
                    session, "wallet", "wallet", "pack391_walletBruteForceShield",
                    {"attempt": "success"}, user_tokens[i % len(user_tokens)],
                    keep=("blocked", "attemptsLeft"),
                )
            )  # fmt: skip

        def fire_signup(i: int) -> None:
            uid = f"chaos-{self.run_id}-{country}-s{i}"
            token = emulator_id_token(self.h.project, uid, {"email_verified": True})
            self.spawn(
                self.call(
                    session, "signup", country, "pack391_checkMarketAccess",
                    {"country": country, "signup": True}, token, uid=uid,
                    keep=("signupAdmitted", "currentUsers", "trafficLimit"),
                )
            )  # fmt: skip

        await asyncio.gather(
            self.open_model(self.config.swipe_rps, until, fire_swipe),
            self.open_model(self.config.ratelimit_rps, until, fire_rate),
            self.open_model(self.config.wallet_rps, until, fire_wallet),
            self.open_model(self.config.signup_rps, until, fire_signup),
        )


# ------------------------------------------------------------------ reading state


class Backends:
    """Direct reads of the stack's Firestore and Redis (after recovery only)."""

    def __init__(self, handle: StackHandle) -> None:
        import redis

        # never through FIRESTORE_EMULATOR_HOST: this runs inside other processes too (a
        # test session), whose own clients must keep their own emulator
        self.db = procs.firestore_client(handle.firestore_host, handle.project)
        self.redis = redis.Redis.from_url(handle.redis_url, socket_timeout=5)

    def close(self) -> None:
        self.redis.close()
        self.db.close()

    def admissions(self, country: str) -> set[str]:
        from shared import collections as c

        ref = self.db.collection(c.MARKETS).document(country).collection(c.MARKET_ADMISSIONS)
        return {snap.id for snap in ref.stream()}

    def members(self, country: str) -> set[str]:
        raw: Any = self.redis.smembers(f"{{pack391:markets}}:{country}:users")
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}

    def docs(self, collection: str) -> list[dict[str, Any]]:
        return [snap.to_dict() or {} for snap in self.db.collection(collection).stream()]

    def keyed(self, collection: str) -> dict[str, dict[str, Any]]:
        return {snap.id: snap.to_dict() or {} for snap in self.db.collection(collection).stream()}

    def live_snapshot(self) -> dict[str, Any] | None:
        from shared import collections as c

        snap = self.db.collection(c.OPS_METRICS).document(c.OPS_LIVE_DOC).get()
        return snap.to_dict() if snap.exists else None

    def history_ids(self) -> list[str]:
        from shared import collections as c

        return [ref.id for ref in self.db.collection(c.OPS_METRICS_HISTORY).list_documents()]

    def recent_decisions(self, since: float) -> list[dict[str, Any]]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        from shared import collections as c

        cutoff = datetime.fromtimestamp(since - 120, tz=UTC)
        query = self.db.collection(c.SCALING_DECISIONS).where(
            filter=FieldFilter("at", ">=", cutoff)
        )
        return [snap.to_dict() or {} for snap in query.stream()]


# ------------------------------------------------------------------ one scenario


async def _admin(
    rec: Recorder, session: aiohttp.ClientSession, name: str, data: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(
        rec.url(name),
        json={"data": data},
        headers={"Authorization": f"Bearer {rec._admin}"},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as response:
        body = await response.json(content_type=None)
    if "result" not in body:
        raise RuntimeError(f"{name} failed: {body}")
    result: dict[str, Any] = body["result"]
    return result


async def _until_ok(rec: Recorder, session: aiohttp.ClientSession, name: str, until: float) -> None:
    """Trigger ``name`` every 3 s until a run answers 200 or ``until`` passes."""
    while True:
        call = await rec.job(session, name, timeout=60)
        if call.http == 200 or _now() >= until:
            return
        await asyncio.sleep(3)


async def run_fault(
    handle: StackHandle, fault: str, config: ChaosConfig, backends: Backends, run_id: str
) -> dict[str, Any]:
    """One scenario: load, apply ``fault``, undo, observe, check."""
    country = COUNTRIES.get(fault, "NL")
    rec = Recorder(handle, config, f"{run_id}-{fault}")
    connector = aiohttp.TCPConnector(limit=config.swipe_max_in_flight + 64)
    async with aiohttp.ClientSession(connector=connector) as session:
        baseline = await asyncio.to_thread(backends.admissions, country)
        limit = len(baseline) + config.traffic_limit
        await _admin(
            rec,
            session,
            "pack391_updateMarketControl",
            {
                "country": country,
                "config": {"launchStatus": "soft_launch", "trafficLimit": limit},
                "reason": f"chaos run {run_id}: {fault}",
            },
        )
        total = config.before_sec + config.during_sec + config.after_sec
        load_until = _now() + total
        load = asyncio.ensure_future(rec.load(session, country, load_until))
        await asyncio.sleep(config.before_sec)
        options = {"max_sec": config.during_sec + 30.0, **config.fault_options.get(fault, {})}
        undo = await asyncio.to_thread(faults.start_fault, handle, fault, **options)
        try:
            await asyncio.sleep(min(1.0, config.during_sec / 3))
            during_jobs = [asyncio.ensure_future(rec.job(session, j, 60)) for j in JOBS]
            await asyncio.sleep(max(0.0, config.during_sec - min(1.0, config.during_sec / 3)))
        finally:
            fault_window = await asyncio.to_thread(undo)
        await asyncio.sleep(min(2.0, config.after_sec / 3))
        after_jobs = [
            asyncio.ensure_future(_until_ok(rec, session, j, load_until + 20)) for j in JOBS
        ]
        await load
        await rec.drain(config.request_timeout_sec + 5)
        await asyncio.gather(*during_jobs, *after_jobs, return_exceptions=True)
        sync = await rec.job(session, SYNC_JOB, 60)
        if sync.http != 200:
            await asyncio.sleep(2)
            await rec.job(session, SYNC_JOB, 60)

    window = cc.Window(
        fault,
        fault_window.started_at,
        fault_window.undone_at,
        fault_window.recovered_at,
    )
    fs_uids = await asyncio.to_thread(backends.admissions, country)
    redis_uids = await asyncio.to_thread(backends.members, country)
    history = [c for c in rec.history if c.op != "job" or c.cls in JOBS]
    verdicts = _check(
        history, rec.history, window, fault, country, limit, fs_uids, redis_uids, baseline,
        backends, config,
    )  # fmt: skip
    _write_history(config.out_dir / f"history-{fault}.jsonl", rec.history)
    swipes = [c for c in rec.history if c.op == "swipe"]
    during = [c for c in swipes if window.phase(c) == "during"]
    return {
        "fault": fault,
        "country": country,
        "trafficLimit": limit,
        "window": {
            "startedAt": window.started_at,
            "undoneAt": window.undone_at,
            "durationSec": round(window.undone_at - window.started_at, 3),
            "recoveredAt": window.recovered_at,
            "notes": fault_window.notes,
        },
        "recoverySec": _round(cc.recovery_time(history, window)),
        "stackRecoverySec": _round(
            window.recovered_at - window.undone_at if window.recovered_at else None
        ),
        "swipe": {
            "targetRps": config.swipe_rps,
            "scheduled": rec.swipe_scheduled,
            "sent": len(swipes),
            "dropped": rec.swipe_dropped,
            "p50MsDuring": round(cc.percentile([c.latency_ms for c in during], 50), 1),
            "p99MsDuring": round(cc.percentile([c.latency_ms for c in during], 99), 1),
        },
        "rateLimitP99MsDuring": round(
            cc.percentile(
                [
                    c.latency_ms
                    for c in history
                    if c.op == "ratelimit" and window.phase(c) == "during"
                ],
                99,
            ),
            1,
        ),
        "outcomes": cc.outcomes(history, window),
        "invariants": [v.to_json() for v in verdicts],
        "held": all(v.held for v in verdicts),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _check(
    history: list[cc.Call],
    everything: list[cc.Call],
    window: cc.Window,
    fault: str,
    country: str,
    limit: int,
    fs_uids: set[str],
    redis_uids: set[str],
    baseline: set[str],
    backends: Backends,
    config: ChaosConfig,
) -> list[cc.Verdict]:
    verdicts = [
        cc.no_internal(history, window, sandbox_errors_window=fault == "sandbox-errors"),
        cc.rate_limit_modes(history),
        cc.answered(history, window, functions_down=fault == "functions-kill"),
        cc.signup_errors_unavailable(history),
    ]
    if fault in ("redis-kill", "redis-pause"):
        verdicts.append(cc.degraded_seen(history, window))
    if fault in (*cc.REDIS_FAULTS, "functions-kill"):
        budget = RECOVERY_BUDGET_SEC.get(fault, config.recovery_budget_sec)
        verdicts.append(cc.recovered_within(history, window, budget))
        verdicts.append(cc.stayed_normal(history, window))
    if fault == "firestore-pause":
        verdicts.append(cc.latency_budget(history, window, config.latency_budget_ms))
    verdicts += cc.admissions(history, country, limit, fs_uids, redis_uids, baseline)
    verdicts += cc.jobs_failed_or_complete(
        history, window, JOBS, functions_down=fault == "functions-kill"
    )
    from shared import collections as c

    try:
        verdicts.append(
            cc.scale_guard_consistent(
                backends.docs(c.SCALING_SERVICES), backends.recent_decisions(window.started_at)
            )
        )
        verdicts.append(
            cc.deploy_monitor_consistent(
                backends.docs(c.DEPLOYMENTS), backends.keyed(c.DEPLOY_ACTIVE)
            )
        )
        verdicts.append(
            cc.live_metrics_consistent(
                backends.live_snapshot(),
                backends.history_ids(),
                [x for x in everything if x.cls == "pack391_updateLiveMetrics"],
            )
        )
    except Exception as exc:  # reading the records failed: that is a finding too
        verdicts.append(cc.Verdict("jobs' records readable after recovery", False, repr(exc), None))
    return verdicts


def _write_history(path: Path, history: list[cc.Call]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for call in sorted(history, key=lambda c: c.t_start):
            out.write(json.dumps(asdict(call), default=str) + "\n")


# ------------------------------------------------------------------ the run


async def _prepare(handle: StackHandle) -> None:
    rec = Recorder(handle, ChaosConfig(), "prepare")
    async with aiohttp.ClientSession() as session:
        # The generator is one address sending every callable: never let DDoS
        # mitigation block it (a block would turn every later answer into a denial).
        await _admin(
            rec,
            session,
            "pack391_setAllowlist",
            {"action": "add", "entry": "127.0.0.1", "reason": "chaos run: the load generator"},
        )
        await _admin(rec, session, "pack391_initScaling", {})


def run_chaos(handle: StackHandle, config: ChaosConfig) -> dict[str, Any]:
    """Every fault of ``config`` in turn; the report (also written as JSON)."""
    unknown = [f for f in config.faults if f not in faults.FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}: one of {', '.join(faults.FAULTS)}")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_prepare(handle))
    backends = Backends(handle)
    scenarios = []
    try:
        for fault in config.faults:
            scenarios.append(asyncio.run(run_fault(handle, fault, config, backends, run_id)))
    finally:
        backends.close()
    report = {
        "runId": run_id,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "faults": scenarios,
        "held": all(s["held"] for s in scenarios),
        "broken": [
            {"fault": s["fault"], **inv}
            for s in scenarios
            for inv in s["invariants"]
            if not inv["held"]
        ],
    }
    (config.out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def render_table(report: dict[str, Any]) -> str:
    """The report as readable text."""
    lines: list[str] = []
    for s in report["faults"]:
        w = s["window"]
        lines.append(
            f"== {s['fault']}  ({w['durationSec']:.1f}s; market {s['country']} limit "
            f"{s['trafficLimit']}; rate-limit recovery "
            f"{_fmt(s['recoverySec'])}s, stack recovery {_fmt(s['stackRecoverySec'])}s; "
            f"swipe {s['swipe']['sent']}/{s['swipe']['scheduled']} sent, "
            f"{s['swipe']['dropped']} dropped, p99 during {s['swipe']['p99MsDuring']} ms; "
            f"checkRateLimit p99 during {s['rateLimitP99MsDuring']} ms)"
        )
        lines.append(f"   {'phase':<7} {'op':<10} outcomes")
        for phase in ("before", "during", "after"):
            for op, counts in s["outcomes"].get(phase, {}).items():
                text = "  ".join(f"{k}={v}" for k, v in counts.items())
                lines.append(f"   {phase:<7} {op:<10} {text}")
        for inv in s["invariants"]:
            mark = "held  " if inv["held"] else "BROKEN"
            lines.append(f"   {mark} {inv['invariant']}: {inv['detail']}")
            if not inv["held"] and inv["counterexample"] is not None:
                example = json.dumps(inv["counterexample"], default=str)
                lines.append(f"          first counterexample: {example}")
    verdict = "every invariant held" if report["held"] else f"{len(report['broken'])} broken"
    lines.append(f"chaos run {report['runId']}: {verdict}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# ------------------------------------------------------------------ the command


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "chaos-run",
        help="apply each fault during a load run; check the invariants (exit 1 if one breaks)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--faults", nargs="+", default=list(ALL_FAULTS), metavar="FAULT")
    p.add_argument("--before", type=float, default=3.0, help="seconds of load before the fault")
    p.add_argument("--during", type=float, default=8.0, help="seconds the fault is on")
    p.add_argument("--after", type=float, default=12.0, help="seconds of load after the undo")
    p.add_argument("--swipe-rps", type=float, default=100.0)
    p.add_argument("--traffic-limit", type=int, default=10)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory")
    p.add_argument(
        "--serve",
        action="store_true",
        help="start a `pack391 serve` of its own on free ports (default: the running stack's "
        "state file, PACK391_STACK_STATE or .local/stack.json)",
    )
    p.set_defaults(func=cmd_chaos_run)


def cmd_chaos_run(args: argparse.Namespace) -> int:
    config = replace(
        ChaosConfig(),
        faults=tuple(args.faults),
        before_sec=args.before,
        during_sec=args.during,
        after_sec=args.after,
        swipe_rps=args.swipe_rps,
        traffic_limit=args.traffic_limit,
        out_dir=args.out,
    )
    try:
        if args.serve:
            with serve_stack(args.out / "logs", args.out / "stack.json") as handle:
                report = run_chaos(handle, config)
        else:
            report = run_chaos(handle=faults.StackHandle.load(), config=config)
    except (ValueError, FileNotFoundError, RuntimeError, FaultError) as exc:
        print(f"pack391 chaos-run: {exc}", file=sys.stderr)
        return 2
    print(render_table(report))
    print(f"report: {config.out_dir / 'report.json'}")
    return 0 if report["held"] else 1
