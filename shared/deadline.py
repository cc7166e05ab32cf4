"""Every call's budget: how long its answer may take, and what each dependency call may
still wait of it. Pure; no client library.

The edge opens a budget per call (:func:`shared.edge.callable_function`: by the caller's
role, ``PACK391_BUDGET_USER_MS`` or ``PACK391_BUDGET_OPS_MS``, or the function's own)
and per scheduled run (:func:`shared.edge.scheduled_function`: within its interval).
Every call to a dependency on that path takes its deadline from what is left
(:func:`timeout_for`): Firestore through the client's gRPC channel
(:mod:`shared.firestore_budget`), Cloud Run, Cloud Monitoring, Cloud Tasks and Cloud
Storage through the ``timeout`` of each call. When nothing is left the call is not made:
:class:`shared.errors.DependencyUnavailable` names the dependency, and the edge answers
``UNAVAILABLE`` with ``retryAfterSec``.

A budget is a :mod:`contextvars` value, so it follows the call's thread and its
:func:`in_context` helpers (a pool's threads do not inherit it by themselves), and a
nested budget never extends the one it is in.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from shared.errors import DependencyUnavailable

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass
class Budget:
    """One call's budget."""

    name: str
    """What it is the budget of (``user call``, ``pack391_scaleGuard`` ...), for messages."""
    seconds: float
    deadline: float
    """On :func:`time.monotonic`'s clock."""
    call_seconds: float = 0.0
    """The budget of the whole call this one is part of (its own ``seconds`` when it is
    the call's): what an error tells the caller."""
    waited_on: list[str] = field(default_factory=list)
    """The dependencies the call asked for time for, most recent last (the one a spent
    budget is blamed on)."""

    def remaining(self, now: float | None = None) -> float:
        return self.deadline - (time.monotonic() if now is None else now)


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "pack391_budget", default=None
)


def current() -> Budget | None:
    """The budget of the call this code runs for (None: no budget, e.g. a tool)."""
    return _current.get()


@contextlib.contextmanager
def budget(seconds: float, name: str) -> Iterator[Budget]:
    """Run the block under a budget of ``seconds``; inside another budget, the earlier
    deadline of the two holds (a step never gets more than its call has left)."""
    outer = _current.get()
    deadline = time.monotonic() + seconds
    if outer is not None and outer.deadline < deadline:
        deadline = outer.deadline
    mine = Budget(name, seconds, deadline, outer.call_seconds if outer else seconds)
    token = _current.set(mine)
    try:
        yield mine
    finally:
        _current.reset(token)
        if outer is not None:
            outer.waited_on.extend(d for d in mine.waited_on if d not in outer.waited_on)


def remaining() -> float | None:
    """Seconds left of the current budget (None: no budget)."""
    mine = _current.get()
    return None if mine is None else mine.remaining()


SPENT_SLACK_SEC = 0.25
"""A driver's timeout this close to the budget's end counts as the budget running out
(timers fire a little early or late)."""


def spent(slack: float = SPENT_SLACK_SEC) -> bool:
    """Whether the current budget has run out, or is within ``slack`` of it (False
    without a budget)."""
    left = remaining()
    return left is not None and left <= slack


def unavailable(dependency: str, mine: Budget | None = None) -> DependencyUnavailable:
    """The error for ``dependency`` not answering within the current budget."""
    mine = mine if mine is not None else _current.get()
    seconds = mine.call_seconds if mine is not None else 0.0
    return DependencyUnavailable(dependency, seconds)


def timeout_for(dependency: str, ceiling: float | None = None) -> float | None:
    """The deadline (seconds) of one call to ``dependency`` now: what is left of the
    budget, at most ``ceiling`` (the call's own bound). Raises
    :class:`~shared.errors.DependencyUnavailable` when nothing is left, so a spent budget
    makes no further call (and a retry loop stops there). Without a budget: ``ceiling``."""
    mine = _current.get()
    if mine is None:
        return ceiling
    if dependency not in mine.waited_on[-1:]:
        mine.waited_on.append(dependency)
    left = mine.remaining()
    if left <= 0:
        raise unavailable(dependency, mine)
    return left if ceiling is None else min(left, ceiling)


def blamed() -> str | None:
    """The dependency a spent budget is blamed on: the last one the call waited for."""
    mine = _current.get()
    return mine.waited_on[-1] if mine is not None and mine.waited_on else None


def sleep_within(seconds: float, dependency: str) -> None:
    """Sleep ``seconds`` (a retry's pause), unless the budget would run out first: then
    raise :class:`~shared.errors.DependencyUnavailable` at once, so retries stay inside it."""
    left = remaining()
    if left is not None and left <= seconds:
        raise unavailable(dependency)
    time.sleep(seconds)


def in_context(work: Callable[_P, _R]) -> Callable[_P, _R]:
    """``work`` bound to the current context (its budget): what a thread pool runs."""
    context = contextvars.copy_context()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        # a copy per run: one context cannot be entered by two threads at once
        return context.copy().run(work, *args, **kwargs)

    return run
