"""The history a chaos run records (:class:`Call`), the fault's :class:`Window`, the
:class:`Verdict` every checker returns, and how a call is classified."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
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
    shield), ``signup`` (checkMarketAccess), ``scale`` (manualScale), ``probe`` (a
    ``pack391 chaos`` probe), ``job`` (a scheduled function's run)."""
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
    function: str | None = None
    """The bundle's function the request called (``pack391_checkRateLimit``, a job's
    name); None for the sandbox's app endpoints, which are not functions of the bundle."""

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


def verdict_held(name: str, detail: str) -> Verdict:
    return Verdict(name, True, detail)


def verdict_broken(name: str, detail: str, example: Call | dict[str, Any]) -> Verdict:
    return Verdict(
        name, False, detail, example.brief() if isinstance(example, Call) else dict(example)
    )


def by_start(history: Iterable[Call]) -> list[Call]:
    return sorted(history, key=lambda c: (c.t_start, c.t_end))


# ------------------------------------------------------------------ outcomes


def callable_answer(
    body: Any, keep: Sequence[str] = ()
) -> tuple[str | None, str | None, float | None, dict[str, Any]]:
    """``(error, reason, retryAfterSec, result)`` of a callable protocol answer's body:
    an error's status, ``details.reason`` and ``details.retryAfterSec``; a result's
    ``reason``, ``retryAfterSec`` and its ``keep`` fields. A body that is neither (a
    non-protocol answer, recorded by its HTTP status): all None."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        return str(err.get("status")), details.get("reason"), details.get("retryAfterSec"), {}
    if isinstance(body, dict) and isinstance(body.get("result"), dict):
        res = body["result"]
        kept = {k: res.get(k) for k in keep if k in res}
        return None, res.get("reason"), res.get("retryAfterSec"), kept
    return None, None, None, {}


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
