"""Last-known answers for the reads that are safe to answer stale (docs/reliability.md,
"Stale answers").

A read whose last-known value is safe to serve for a while (market controls, the service
registry as ``pack391_serviceHealthCheck`` lists it, the ops dashboard and its charts)
keeps, per instance, the last value it read, keyed by what was asked (:class:`LastKnown`).
When its dependency stalls it answers that copy, marked ``stale`` with its age, instead of
waiting:

- with a usable copy (at most ``max_age_sec`` old: ``PACK391_STALE_MAX_SEC``), the read
  waits for its dependency at most :data:`STALE_READ_WAIT_SEC` or what is left of the
  call's budget (:mod:`shared.deadline`), whichever is less: a stale-capable read never
  spends the whole budget on a dependency that does not answer;
- without one (a cold instance, a new key, a copy past its maximum staleness) there is
  nothing to fall back on: the read waits as any read does, within the call's budget, and
  a stall is answered ``UNAVAILABLE`` naming the dependency
  (:class:`shared.errors.DependencyUnavailable`).

Reads that decide admission or money (admission counts, the wallet shield, the deploy
guard's state, backups) never come through here.

The copy is per instance and in memory, as the platform runs one process per instance:
each instance's copy is as old as its own last successful read (``staleAgeSec`` says how
old). Whether a copy is usable, and for how long a read may wait, are pure functions of
data and ``now`` (:func:`usable`, :func:`copy_age_sec`, :func:`fetch_wait_sec`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared import deadline
from shared.errors import DependencyUnavailable

log = logging.getLogger("pack391")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

STALE_READ_WAIT_SEC = 1.0
"""How long a read that holds a usable copy waits for its dependency before it answers
the copy: well above a healthy Firestore read (milliseconds), a third of a user call's
3 s budget, so the call still has time to answer."""

MAX_KEYS = 256
"""Copies one read keeps per instance at most, the oldest stored dropped first: a read's
keys are few (countries, services, the charts' ranges), but its callers choose them."""

# ------------------------------------------------------------------ pure parts


def copy_age_sec(stored_at: float, now: float) -> float:
    """Age of a copy stored at ``stored_at`` (monotonic seconds) at ``now``; never
    negative (two threads may read the clock in either order)."""
    return max(0.0, now - stored_at)


def usable(stored_at: float | None, now: float, max_age_sec: float) -> bool:
    """Whether a copy stored at ``stored_at`` (None: no copy) may be answered at ``now``:
    it is at most ``max_age_sec`` old (0 or less: no stale answers at all)."""
    if stored_at is None or max_age_sec <= 0:
        return False
    return copy_age_sec(stored_at, now) <= max_age_sec


def fetch_wait_sec(remaining: float | None, wait_sec: float, have_copy: bool) -> float | None:
    """How long the read may wait for its dependency: with a usable copy, ``wait_sec`` or
    what is left of the call's budget (``remaining``; None: no budget), whichever is less;
    without one, what is left of the budget (None: no bound of ours, the call has none)."""
    if not have_copy:
        return remaining
    if remaining is None:
        return wait_sec
    return max(0.0, min(wait_sec, remaining))


def stalled(
    exc: BaseException, dependency: str, wait: deadline.Budget | None, now: float | None = None
) -> bool:
    """Whether ``exc`` (raised by a read that waited under ``wait``) is ``dependency`` not
    answering in time: the budget's own error for it, or any error once the wait is spent
    on it, or within :data:`shared.deadline.SPENT_SLACK_SEC` of its end (a driver that
    gave up at the deadline the budget set). ``now``: on :func:`time.monotonic`'s clock
    (None: now)."""
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency == dependency
    if wait is None or dependency not in wait.waited_on:
        return False
    return wait.remaining(now) <= deadline.SPENT_SLACK_SEC


# ------------------------------------------------------------------ the copy


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A read's value, fresh or the last-known copy."""

    value: T
    stale: bool = False
    """True: the dependency did not answer in time and ``value`` is the last-known copy."""
    age_sec: float | None = None
    """How old the stale copy is (seconds since this instance read it); None when fresh."""

    def marks(self) -> dict[str, Any]:
        """The response model fields that say so: ``stale`` and ``stale_age_sec``."""
        return {"stale": self.stale, "stale_age_sec": self.age_sec}


@dataclass(frozen=True)
class _Copy(Generic[T]):
    value: T
    stored_at: float
    """When the read that returned ``value`` started, on the copy's clock (monotonic
    seconds): the value is at most this old."""


_ALL: weakref.WeakSet[LastKnown[Any, Any]] = weakref.WeakSet()


def forget_all() -> None:
    """Drop every copy of this instance (tests; nothing in the bundle needs it)."""
    for copies in list(_ALL):
        copies.forget()


class LastKnown(Generic[K, T]):
    """The last value each key of one read returned on this instance, and the read that
    answers it when ``dependency`` stalls. Thread-safe: the platform serves concurrent
    calls of one instance on threads."""

    def __init__(
        self,
        name: str,
        dependency: str = "firestore",
        *,
        wait_sec: float = STALE_READ_WAIT_SEC,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        """What is read (``market controls``...), for the log."""
        self.dependency = dependency
        self._wait_sec = wait_sec
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._copies: dict[K, _Copy[T]] = {}
        _ALL.add(self)

    def read(self, key: K, fetch: Callable[[], T], max_age_sec: float) -> Answer[T]:
        """``fetch()`` (which reads ``dependency``), kept as ``key``'s copy; when the
        dependency does not answer in time (:func:`fetch_wait_sec`), ``key``'s copy if it
        is usable (:func:`usable`), marked stale with its age, else
        :class:`~shared.errors.DependencyUnavailable`. Any other error of ``fetch`` is
        raised as it is."""
        call = deadline.current()
        with self._lock:
            copy = self._copies.get(key)
        have = usable(copy.stored_at if copy else None, self._clock(), max_age_sec)
        limit = fetch_wait_sec(deadline.remaining(), self._wait_sec, have)
        scope: contextlib.AbstractContextManager[deadline.Budget | None] = (
            contextlib.nullcontext()
            if limit is None
            else deadline.budget(limit, f"{self.name} (stale-capable read)")
        )
        started = self._clock()  # the copy's age counts from here: never under-reported
        with scope as wait:
            try:
                value = fetch()
            except Exception as exc:
                if not stalled(exc, self.dependency, wait):
                    raise
                return self._fallback(key, max_age_sec, call, exc)
        with self._lock:
            self._copies.pop(key, None)  # stored last: dropped last
            self._copies[key] = _Copy(value, started)
            while len(self._copies) > self._max_keys:
                del self._copies[next(iter(self._copies))]
        return Answer(value)

    def forget(self) -> None:
        """Drop every copy (tests)."""
        with self._lock:
            self._copies.clear()

    def _fallback(
        self, key: K, max_age_sec: float, call: deadline.Budget | None, exc: Exception
    ) -> Answer[T]:
        now = self._clock()
        with self._lock:
            copy = self._copies.get(key)
        if copy is None or not usable(copy.stored_at, now, max_age_sec):
            raise deadline.unavailable(self.dependency, call) from exc
        age = round(copy_age_sec(copy.stored_at, now), 3)
        log.warning(
            "%s: %s did not answer in time: answering the copy of %.1f s ago (%s)",
            self.name,
            self.dependency,
            age,
            exc,
        )
        return Answer(copy.value, stale=True, age_sec=age)
