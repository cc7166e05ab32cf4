"""Invariant checkers over a recorded chaos history: pure functions, no I/O.

A history is the list of every request a chaos run made (:class:`Call`), with the
fault's window (:class:`Window`: when it was applied, undone, and when the stack was
seen healthy again). Each checker returns a :class:`Verdict`: held or broken, with the
FIRST counterexample (the earliest offending request, or the offending record) and a
short measurement. The runner (``stack/chaos_run.py``) reads Firestore and Redis after
recovery and passes what it read in as plain data, so every checker is table-tested
(``tests/stack/test_chaos_check.py``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

FAIL_CLOSED = ("auth", "wallet", "payment")
"""Endpoint classes that answer ``UNAVAILABLE`` (with ``retryAfterSec``) while Redis is down."""
FAIL_OPEN = ("swipe", "general", "ai")
"""Endpoint classes that pass (``allowed: true``, ``reason: "redis_unavailable"``)."""
REDIS_UNAVAILABLE = "redis_unavailable"

REDIS_FAULTS = ("redis-kill", "redis-pause", "redis-slow")
"""Faults during which a rate-limit decision may be degraded (Redis gone or too slow)."""

ADMITTED_REASONS = ("admitted", "already_admitted")
"""``checkMarketAccess`` reasons with ``signupAdmitted: true`` that tell the caller a place."""
REFUSED_REASONS = ("traffic_limit_reached",)
"""Definite refusals: nothing may be recorded for the caller afterwards."""


@dataclass(frozen=True)
class Call:
    """One request of the history."""

    op: str
    """``swipe`` (sandbox), ``ratelimit`` (checkRateLimit), ``wallet`` (brute-force
    shield), ``signup`` (checkMarketAccess), ``job`` (a scheduled function's run)."""
    cls: str
    """Endpoint class (``ratelimit``/``wallet``), sandbox endpoint, job name, country."""
    t_start: float
    t_end: float
    http: int | None
    """HTTP status; None when no answer came (timeout, refused connection)."""
    error: str | None = None
    """Callable error status (``UNAVAILABLE``...), ``timeout``, ``connection`` or None."""
    reason: str | None = None
    """``details.reason`` of an error, or ``result.reason`` of an answer."""
    retry_after: float | None = None
    """``details.retryAfterSec`` / ``result.retryAfterSec``."""
    result: dict[str, Any] = field(default_factory=dict)
    """The answer's fields that matter (``allowed``, ``signupAdmitted``, ...)."""
    uid: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.t_end - self.t_start) * 1000

    def brief(self) -> dict[str, Any]:
        """The JSON form of a counterexample."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


@dataclass(frozen=True)
class Window:
    """When the fault was on (``time.time()`` seconds)."""

    fault: str
    started_at: float
    undone_at: float
    recovered_at: float | None = None

    def phase(self, call: Call) -> str:
        """``before``, ``during`` or ``after``, by the request's start."""
        if call.t_start < self.started_at:
            return "before"
        if call.t_start < self.undone_at:
            return "during"
        return "after"

    def overlaps(self, call: Call) -> bool:
        """The request was in flight at some point while the fault was on."""
        return call.t_start < self.undone_at and call.t_end >= self.started_at


@dataclass(frozen=True)
class Verdict:
    name: str
    held: bool
    detail: str
    counterexample: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "invariant": self.name,
            "held": self.held,
            "detail": self.detail,
            "counterexample": self.counterexample,
        }


def _held(name: str, detail: str) -> Verdict:
    return Verdict(name, True, detail)


def _broken(name: str, detail: str, example: Call | dict[str, Any]) -> Verdict:
    return Verdict(
        name, False, detail, example.brief() if isinstance(example, Call) else dict(example)
    )


def _by_start(history: Iterable[Call]) -> list[Call]:
    return sorted(history, key=lambda c: (c.t_start, c.t_end))


# ------------------------------------------------------------------ outcomes


def outcome(call: Call) -> str:
    """A label for counting: ``ok``, ``ok:fail_open``, ``denied``, an error status,
    ``http_<code>`` (sandbox and jobs), ``timeout`` or ``connection``."""
    if call.error is not None:
        return call.error
    if call.http is not None and call.http >= 400:
        return f"http_{call.http}"
    if call.op in ("ratelimit", "wallet"):
        if call.reason == REDIS_UNAVAILABLE:
            return "ok:fail_open"
        if call.result.get("allowed") is False or call.result.get("blocked") is True:
            return "denied"
    if call.op == "signup":
        return "admitted" if call.result.get("signupAdmitted") else f"refused:{call.reason}"
    return "ok"


def outcomes(history: Iterable[Call], window: Window) -> dict[str, dict[str, dict[str, int]]]:
    """``{phase: {op: {outcome: count}}}``."""
    table: dict[str, dict[str, Counter[str]]] = {}
    for call in history:
        ops = table.setdefault(window.phase(call), {})
        ops.setdefault(call.op, Counter())[outcome(call)] += 1
    return {
        phase: {op: dict(sorted(c.items())) for op, c in sorted(ops.items())}
        for phase, ops in table.items()
    }


def is_degraded(call: Call) -> bool:
    """A rate-limit answer given without Redis: fail-open or fail-closed."""
    return call.reason == REDIS_UNAVAILABLE or call.error == "UNAVAILABLE"


def is_normal_decision(call: Call) -> bool:
    """A rate-limit answer decided by Redis (allowed or denied, not degraded)."""
    return (
        call.op in ("ratelimit", "wallet")
        and call.http == 200
        and call.error is None
        and call.reason != REDIS_UNAVAILABLE
    )


# ------------------------------------------------------------------ checkers


def no_internal(
    history: Iterable[Call], window: Window, sandbox_errors_window: bool = False
) -> Verdict:
    """No ``INTERNAL`` and no HTTP 500 anywhere, except the sandbox's own 500s while
    the ``sandbox-errors`` fault injects them (those are the fault; until the stack is
    seen healthy after the undo, since ``undone_at`` is taken before the undo's request
    reaches the sandbox). A scheduled job's 500 is its documented failure answer
    (checked by :func:`jobs_failed_or_complete`)."""
    name = "no INTERNAL, no HTTP 500"
    seen = 0
    for call in _by_start(history):
        if call.op == "job":
            continue
        seen += 1
        if (
            call.op == "swipe"
            and sandbox_errors_window
            and window.overlaps(_until_healthy(call, window))
        ):
            continue
        if call.error == "INTERNAL" or call.http == 500:
            return _broken(name, f"{call.op} answered {call.error or call.http}", call)
    return _held(name, f"{seen} requests")


def _until_healthy(call: Call, window: Window) -> Call:
    """``call`` moved back to the undo when it started before the stack was seen healthy
    (the undo itself takes a moment to reach the child)."""
    healthy = window.recovered_at if window.recovered_at is not None else window.undone_at + 1
    if window.undone_at <= call.t_start < healthy:
        return Call(call.op, call.cls, window.undone_at - 1e-6, call.t_end, call.http)
    return call


def rate_limit_modes(history: Iterable[Call]) -> Verdict:
    """Without Redis, fail-closed classes answer ``UNAVAILABLE`` with a positive
    ``retryAfterSec`` and never pass; fail-open classes pass (``allowed: true``,
    ``reason: "redis_unavailable"``) and never answer ``UNAVAILABLE``."""
    name = "fail-closed auth/wallet/payment, fail-open swipe/general"
    closed = opened = 0
    for call in _by_start(history):
        if call.op not in ("ratelimit", "wallet"):
            continue
        if call.cls in FAIL_CLOSED:
            if call.error == "UNAVAILABLE":
                closed += 1
                if call.retry_after is None or not call.retry_after > 0:
                    return _broken(name, f"{call.cls} UNAVAILABLE without retryAfterSec", call)
            elif call.reason == REDIS_UNAVAILABLE:
                return _broken(name, f"{call.cls} failed open", call)
        elif call.cls in FAIL_OPEN:
            if call.error == "UNAVAILABLE":
                return _broken(name, f"{call.cls} failed closed", call)
            if call.reason == REDIS_UNAVAILABLE:
                opened += 1
                if call.result.get("allowed") is not True:
                    return _broken(name, f"{call.cls} degraded but not allowed", call)
    return _held(name, f"{closed} fail-closed and {opened} fail-open answers")


def degraded_seen(history: Iterable[Call], window: Window) -> Verdict:
    """A Redis fault took effect: at least one degraded answer overlapped it."""
    name = "the fault was seen (a degraded rate-limit answer)"
    for call in _by_start(history):
        if window.overlaps(call) and call.op in ("ratelimit", "wallet") and is_degraded(call):
            return _held(name, f"first at +{call.t_start - window.started_at:.2f}s")
    return _broken(
        name,
        "no rate-limit answer overlapping the fault was degraded",
        {"fault": window.fault, "startedAt": window.started_at, "undoneAt": window.undone_at},
    )


def recovery_time(history: Iterable[Call], window: Window) -> float | None:
    """Seconds from the undo to the end of the first normal rate-limit decision of a
    request started after it; None when there was none."""
    for call in _by_start(history):
        if call.t_start >= window.undone_at and is_normal_decision(call):
            return call.t_end - window.undone_at
    return None


def recovered_within(history: Sequence[Call], window: Window, budget_sec: float) -> Verdict:
    """Decisions are normal again within ``budget_sec`` of the undo: the first normal
    rate-limit decision of a request started after the undo ended in time."""
    name = f"rate-limit decisions normal within {budget_sec:g}s of the undo"
    took = recovery_time(history, window)
    if took is None:
        return _broken(name, "no normal decision after the undo", {"undoneAt": window.undone_at})
    if took > budget_sec:
        first = next(
            c for c in _by_start(history) if c.t_start >= window.undone_at and is_normal_decision(c)
        )
        return _broken(name, f"first normal decision {took:.2f}s after the undo", first)
    return _held(name, f"{took:.2f}s")


def stayed_normal(history: Sequence[Call], window: Window) -> Verdict:
    """Once normal again, decisions stay normal: no degraded answer (fail-open or
    UNAVAILABLE) for a request started after the first normal decision after the undo."""
    name = "rate-limit decisions stay normal after recovering"
    took = recovery_time(history, window)
    if took is None:
        return _held(name, "never recovered (see the recovery invariant)")
    back = window.undone_at + took
    late = [
        c
        for c in _by_start(history)
        if c.t_start > back and c.op in ("ratelimit", "wallet") and is_degraded(c)
    ]
    if late:
        first = late[0]
        return _broken(
            name,
            f"{len(late)} degraded answer(s) after recovering, the first "
            f"{first.t_start - window.undone_at:.2f}s after the undo",
            first,
        )
    return _held(name, "no degraded answer after recovering")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_budget(
    history: Iterable[Call], window: Window, budget_ms: float, pct: float = 99.0
) -> Verdict:
    """``pct`` of the rate-limit decisions started during the fault took at most
    ``budget_ms`` (every request counted, answered or not)."""
    name = f"checkRateLimit p{pct:g} <= {budget_ms:g} ms during the fault"
    during = [c for c in history if c.op == "ratelimit" and window.phase(c) == "during"]
    if not during:
        return _broken(name, "no checkRateLimit request during the fault", {"fault": window.fault})
    value = percentile([c.latency_ms for c in during], pct)
    if value > budget_ms:
        slowest = max(during, key=lambda c: c.latency_ms)
        return _broken(name, f"p{pct:g} {value:.0f} ms over {len(during)} requests", slowest)
    return _held(name, f"p{pct:g} {value:.0f} ms over {len(during)} requests")


def answered(history: Iterable[Call], window: Window, functions_down: bool = False) -> Verdict:
    """Every callable request got an answer in the callable protocol (a result or an
    error status), never a silent drop: a client timeout is a counterexample; a refused
    connection only while the functions server itself is the fault."""
    name = "every callable request answered (no hang, no silent drop)"
    count = 0
    for call in _by_start(history):
        if call.op in ("swipe", "job"):
            continue
        count += 1
        if call.error == "timeout":
            return _broken(name, f"no answer in {call.latency_ms / 1000:.1f}s", call)
        if call.error == "connection" and not (functions_down and window.overlaps(call)):
            return _broken(name, "connection failed", call)
        if call.error is None and call.http != 200:
            return _broken(name, f"HTTP {call.http} without an error status", call)
    return _held(name, f"{count} callable requests")


def signup_errors_unavailable(history: Iterable[Call]) -> Verdict:
    """A signup that failed says so with ``UNAVAILABLE`` (retry), never another error."""
    name = "failed signups answer UNAVAILABLE"
    for call in _by_start(history):
        if call.op != "signup" or call.error is None:
            continue
        if call.error not in ("UNAVAILABLE", "timeout", "connection"):
            return _broken(name, f"signup answered {call.error}", call)
    return _held(name, "every failed signup was UNAVAILABLE")


# ---------------------------------------------------------------- admissions


def told_admitted(history: Iterable[Call], country: str) -> list[Call]:
    """Signups of ``country`` answered with a place, in order of their answer."""
    return sorted(
        (
            c
            for c in history
            if c.op == "signup"
            and c.cls == country
            and c.error is None
            and c.result.get("signupAdmitted") is True
            and c.reason in ADMITTED_REASONS
        ),
        key=lambda c: c.t_end,
    )


def admissions(
    history: Sequence[Call],
    country: str,
    limit: int,
    firestore_uids: Iterable[str],
    redis_uids: Iterable[str],
    baseline_uids: Iterable[str] = (),
) -> list[Verdict]:
    """Jepsen-style over the signups of one soft-launch market (no release during the
    run, so admissions only grow): never more than ``limit`` distinct callers told they
    were admitted; Firestore's admissions at most ``limit``; every admission a caller
    was told about is in Firestore; no admission recorded for a caller refused at the
    limit; after recovery (and a sync) Firestore's admissions and Redis's member set
    are the same set. ``baseline_uids`` were admitted before the run."""
    fs, rs, base = set(firestore_uids), set(redis_uids), set(baseline_uids)
    verdicts: list[Verdict] = []

    name = f"never more than trafficLimit={limit} admitted"
    seen: set[str] = set(base)
    broken: Verdict | None = None
    for call in told_admitted(history, country):
        if call.uid is not None:
            seen.add(call.uid)
        if len(seen) > limit:
            broken = _broken(name, f"admission #{len(seen)} told to a caller", call)
            break
    if broken is None and len(fs) > limit:
        broken = _broken(
            name,
            f"Firestore holds {len(fs)} admissions",
            {"country": country, "firestoreCount": len(fs), "uids": sorted(fs - base)[:10]},
        )
    verdicts.append(
        broken or _held(name, f"{len(seen)} told admitted, {len(fs)} in Firestore, limit {limit}")
    )

    name = "every acknowledged admission is in Firestore"
    missing = [c for c in told_admitted(history, country) if c.uid not in fs]
    verdicts.append(
        _broken(name, f"{len(missing)} told admitted but not recorded", missing[0])
        if missing
        else _held(name, f"{len(seen - base)} acknowledged, all recorded")
    )

    name = "no admission recorded for a refused caller"
    refused = [
        c
        for c in _by_start(history)
        if c.op == "signup"
        and c.cls == country
        and c.error is None
        and c.result.get("signupAdmitted") is False
        and c.reason in REFUSED_REASONS
        and c.uid in fs
        and c.uid not in seen
    ]
    verdicts.append(
        _broken(name, "refused at the limit, yet recorded", refused[0])
        if refused
        else _held(name, "none")
    )

    name = "Firestore admissions == Redis member set after recovery"
    if fs != rs:
        verdicts.append(
            _broken(
                name,
                f"Firestore {len(fs)}, Redis {len(rs)}",
                {
                    "country": country,
                    "onlyInFirestore": sorted(fs - rs)[:10],
                    "onlyInRedis": sorted(rs - fs)[:10],
                },
            )
        )
    else:
        verdicts.append(_held(name, f"{len(fs)} in both"))
    return verdicts


# ---------------------------------------------------------------- scheduled jobs


def jobs_failed_or_complete(
    history: Iterable[Call], window: Window, jobs: Sequence[str], functions_down: bool = False
) -> list[Verdict]:
    """Each job run overlapping the fault answered 200 (complete) or 500 (failed, to be
    retried) and nothing else; after the undo, a run of each job completed (200). While
    the functions server itself is the fault, a refused connection is a failed run too
    (nothing ran; Cloud Scheduler records it failed and retries)."""
    calls = [c for c in _by_start(history) if c.op == "job"]
    verdicts: list[Verdict] = []
    for job in jobs:
        mine = [c for c in calls if c.cls == job]
        during = [c for c in mine if window.overlaps(c)]
        name = f"{job}: a run during the fault failed (500) or completed (200)"
        odd = [
            c
            for c in during
            if c.http not in (200, 500) and not (functions_down and c.error == "connection")
        ]
        if not during:
            verdicts.append(_broken(name, "not triggered during the fault", {"job": job}))
        elif odd:
            verdicts.append(_broken(name, f"answered {odd[0].http or odd[0].error}", odd[0]))
        else:
            verdicts.append(_held(name, ", ".join(str(c.http or c.error) for c in during)))
        name = f"{job}: a run after recovery completed"
        after = [c for c in mine if c.t_start >= window.undone_at]
        ok = [c for c in after if c.http == 200]
        verdicts.append(
            _held(name, f"{len(ok)} of {len(after)} runs answered 200")
            if ok
            else _broken(
                name,
                f"none of {len(after)} runs after the undo answered 200",
                after[-1] if after else {"job": job},
            )
        )
    return verdicts


def _get(doc: dict[str, Any], *path: str) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def scale_guard_consistent(
    services: Sequence[dict[str, Any]], decisions: Sequence[dict[str, Any]]
) -> Verdict:
    """Scale guard records are consistent: no service is left with an instance change
    in flight (``state.pending``) after a completed run, and each service's latest
    acted, non-dry-run decision is what its state records (``desiredInstances ==
    state.currentInstances``): never a scaling applied but not recorded, or recorded
    but not applied."""
    name = "scaleGuard records consistent"
    if not services:
        return _broken(name, "no service in the scaling registry", {})
    latest: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if not d.get("acted") or d.get("dryRun"):
            continue
        sid = str(d.get("serviceId"))
        if sid not in latest or _key_at(d) >= _key_at(latest[sid]):
            latest[sid] = d
    for svc in sorted(services, key=lambda s: str(_get(s, "config", "serviceId"))):
        sid = str(_get(svc, "config", "serviceId"))
        if _get(svc, "state", "pending") is not None:
            return _broken(
                name,
                f"{sid} left with an action in flight",
                {"serviceId": sid, "pending": _get(svc, "state", "pending")},
            )
        last = latest.get(sid)
        current = _get(svc, "state", "currentInstances")
        if last is not None and last.get("desiredInstances") != current:
            return _broken(
                name,
                f"{sid}: last acted decision {last.get('desiredInstances')}, state {current}",
                {"serviceId": sid, "decision": last, "currentInstances": current},
            )
    return _held(name, f"{len(services)} services, {len(latest)} with an acted decision")


def _key_at(doc: dict[str, Any]) -> str:
    at = doc.get("at")
    return at.isoformat() if isinstance(at, datetime) else str(at)


FINAL_PHASES = ("succeeded", "rolled_back", "failed")


def deploy_monitor_consistent(
    deployments: Sequence[dict[str, Any]], active: dict[str, dict[str, Any]]
) -> Verdict:
    """Deploy records are consistent: each ``pack391_deploy_active/{env}`` names an
    existing deployment of that environment that is not in a final phase, and each
    deployment not in a final phase is the active one of its environment; a deployment's
    traffic is within 0..100."""
    name = "deploy monitor records consistent"
    by_id = {str(d.get("deploymentId")): d for d in deployments}
    for env, doc in sorted(active.items()):
        dep = by_id.get(str(doc.get("deploymentId")))
        if dep is None or dep.get("environment") != env or dep.get("phase") in FINAL_PHASES:
            return _broken(
                name,
                f"active record of {env} points at a missing or finished deployment",
                {"environment": env, "active": doc, "deployment": dep},
            )
    for dep in deployments:
        if dep.get("phase") not in FINAL_PHASES and (
            active.get(str(dep.get("environment")), {}).get("deploymentId")
            != dep.get("deploymentId")
        ):
            return _broken(name, "a running deployment is not the active one", dep)
        traffic = dep.get("trafficPercent", 0)
        if not isinstance(traffic, int) or not 0 <= traffic <= 100:
            return _broken(name, f"traffic {traffic}", dep)
    return _held(name, f"{len(deployments)} deployments, {len(active)} active")


def live_metrics_consistent(
    snapshot: dict[str, Any] | None,
    history_ids: Iterable[str],
    runs: Iterable[Call],
) -> Verdict:
    """Live metrics records are consistent: every run that answered 200 wrote its
    minute's history point (``pack391_ops_metrics_history/{%Y%m%dT%H%MZ}`` of a minute
    the run was in flight), and the live snapshot is at least as new as the start of
    the last successful run (the snapshot and the point are one batch)."""
    name = "updateLiveMetrics records consistent"
    ids = set(history_ids)
    ok = sorted((c for c in runs if c.op == "job" and c.http == 200), key=lambda c: c.t_start)
    for call in ok:
        minutes = {_minute_id(call.t_start), _minute_id(call.t_end)}
        if not minutes & ids:
            return _broken(name, f"no history point for minute(s) {sorted(minutes)}", call)
    if ok:
        at = snapshot.get("at") if snapshot else None
        at_sec = at.timestamp() if isinstance(at, datetime) else None
        if at_sec is None or at_sec < ok[-1].t_start - 1.0:
            return _broken(name, "the live snapshot is older than the last successful run", ok[-1])
    return _held(name, f"{len(ok)} successful runs, each with its history point")


def _minute_id(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y%m%dT%H%MZ")
