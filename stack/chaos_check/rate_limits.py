"""The rate-limit checkers: no INTERNAL, fail-closed and fail-open modes while Redis
is down, the fault seen, recovery in time and for good, the latency budget, every
callable request answered, failed signups answering UNAVAILABLE."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from stack.chaos_check.history import (
    FAIL_CLOSED,
    FAIL_OPEN,
    REDIS_UNAVAILABLE,
    Call,
    Verdict,
    Window,
    by_start,
    is_degraded,
    is_normal_decision,
    verdict_broken,
    verdict_held,
)


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
    for call in by_start(history):
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
            return verdict_broken(name, f"{call.op} answered {call.error or call.http}", call)
    return verdict_held(name, f"{seen} requests")


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
    for call in by_start(history):
        if call.op not in ("ratelimit", "wallet"):
            continue
        if call.cls in FAIL_CLOSED:
            if call.error == "UNAVAILABLE":
                closed += 1
                if call.retry_after is None or not call.retry_after > 0:
                    return verdict_broken(
                        name, f"{call.cls} UNAVAILABLE without retryAfterSec", call
                    )
            elif call.reason == REDIS_UNAVAILABLE:
                return verdict_broken(name, f"{call.cls} failed open", call)
        elif call.cls in FAIL_OPEN:
            if call.error == "UNAVAILABLE":
                return verdict_broken(name, f"{call.cls} failed closed", call)
            if call.reason == REDIS_UNAVAILABLE:
                opened += 1
                if call.result.get("allowed") is not True:
                    return verdict_broken(name, f"{call.cls} degraded but not allowed", call)
    return verdict_held(name, f"{closed} fail-closed and {opened} fail-open answers")


def degraded_seen(history: Iterable[Call], window: Window) -> Verdict:
    """A Redis fault took effect: at least one degraded answer overlapped it."""
    name = "the fault was seen (a degraded rate-limit answer)"
    for call in by_start(history):
        if window.overlaps(call) and call.op in ("ratelimit", "wallet") and is_degraded(call):
            return verdict_held(name, f"first at +{call.t_start - window.started_at:.2f}s")
    return verdict_broken(
        name,
        "no rate-limit answer overlapping the fault was degraded",
        {"fault": window.fault, "startedAt": window.started_at, "undoneAt": window.undone_at},
    )


def recovery_time(history: Iterable[Call], window: Window) -> float | None:
    """Seconds from the undo to the end of the first normal rate-limit decision of a
    request started after it; None when there was none."""
    for call in by_start(history):
        if call.t_start >= window.undone_at and is_normal_decision(call):
            return call.t_end - window.undone_at
    return None


def recovered_within(history: Sequence[Call], window: Window, budget_sec: float) -> Verdict:
    """Decisions are normal again within ``budget_sec`` of the undo: the first normal
    rate-limit decision of a request started after the undo ended in time."""
    name = f"rate-limit decisions normal within {budget_sec:g}s of the undo"
    took = recovery_time(history, window)
    if took is None:
        return verdict_broken(
            name, "no normal decision after the undo", {"undoneAt": window.undone_at}
        )
    if took > budget_sec:
        first = next(
            c for c in by_start(history) if c.t_start >= window.undone_at and is_normal_decision(c)
        )
        return verdict_broken(name, f"first normal decision {took:.2f}s after the undo", first)
    return verdict_held(name, f"{took:.2f}s")


def stayed_normal(history: Sequence[Call], window: Window) -> Verdict:
    """Once normal again, decisions stay normal: no degraded answer (fail-open or
    UNAVAILABLE) for a request started after the first normal decision after the undo."""
    name = "rate-limit decisions stay normal after recovering"
    took = recovery_time(history, window)
    if took is None:
        return verdict_held(name, "never recovered (see the recovery invariant)")
    back = window.undone_at + took
    late = [
        c
        for c in by_start(history)
        if c.t_start > back and c.op in ("ratelimit", "wallet") and is_degraded(c)
    ]
    if late:
        first = late[0]
        return verdict_broken(
            name,
            f"{len(late)} degraded answer(s) after recovering, the first "
            f"{first.t_start - window.undone_at:.2f}s after the undo",
            first,
        )
    return verdict_held(name, "no degraded answer after recovering")


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
        return verdict_broken(
            name, "no checkRateLimit request during the fault", {"fault": window.fault}
        )
    value = percentile([c.latency_ms for c in during], pct)
    if value > budget_ms:
        slowest = max(during, key=lambda c: c.latency_ms)
        return verdict_broken(name, f"p{pct:g} {value:.0f} ms over {len(during)} requests", slowest)
    return verdict_held(name, f"p{pct:g} {value:.0f} ms over {len(during)} requests")


def answered(history: Iterable[Call], window: Window, functions_down: bool = False) -> Verdict:
    """Every callable request got an answer in the callable protocol (a result or an
    error status), never a silent drop: a client timeout is a counterexample; a refused
    connection only while the functions server itself is the fault."""
    name = "every callable request answered (no hang, no silent drop)"
    count = 0
    for call in by_start(history):
        if call.op in ("swipe", "job"):
            continue
        count += 1
        if call.error == "timeout":
            return verdict_broken(name, f"no answer in {call.latency_ms / 1000:.1f}s", call)
        if call.error == "connection" and not (functions_down and window.overlaps(call)):
            return verdict_broken(name, "connection failed", call)
        if call.error is None and call.http != 200:
            return verdict_broken(name, f"HTTP {call.http} without an error status", call)
    return verdict_held(name, f"{count} callable requests")


def signup_errors_unavailable(history: Iterable[Call]) -> Verdict:
    """A signup that failed says so with ``UNAVAILABLE`` (retry), never another error."""
    name = "failed signups answer UNAVAILABLE"
    for call in by_start(history):
        if call.op != "signup" or call.error is None:
            continue
        if call.error not in ("UNAVAILABLE", "timeout", "connection"):
            return verdict_broken(name, f"signup answered {call.error}", call)
    return verdict_held(name, "every failed signup was UNAVAILABLE")
