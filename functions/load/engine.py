"""The open-model load engine: one shard of a run.

Starts follow the plan's arrival schedule whatever the target does (like k6's
constant-arrival-rate executor and wrk2): a request is started at its scheduled time
without waiting for earlier ones, and its latency is measured from that scheduled
time, so a stalled target shows in the percentiles (no coordinated omission). A start
the generator makes more than ``LOAD_TEST_LATE_START_MS`` behind is ``late``; one it
cannot make at all (more than ``LOAD_TEST_DROP_AFTER_MS`` behind, or the in-flight
bound reached) is ``dropped``: both are counted apart from the target's errors. A
``503`` answer carrying ``Retry-After`` is ``shed`` (the target refused it for being
over capacity, as Cloud Run does), counted apart from errors too and kept out of the
latency histograms (:data:`SHED`).

The per-request path is kept lean, because every CPU-second the generator burns is
one the system under test loses when they share a machine (docs/benchmarks.md has the
profile). The event loop is uvloop's when it is installed. Starts are driven by one
timer callback that starts every start already due, then re-arms for the next one
(no task, coroutine or future per request). Requests go over a small HTTP/1.1 client
of kept-alive connections (:mod:`functions.load.http_client`): a request is one
``write`` of a pre-built head plus its JSON body, its response is parsed in
``data_received`` (Content-Length or chunked) and recorded there. At most
``max_in_flight`` requests (one per connection, no pipelining) are open; a request
past ``timeout_sec`` is a ``timeout`` error and its connection is closed (checked
every ``LOAD_TEST_ABORT_POLL_SEC``). Error kinds keep aiohttp's names
(``ClientConnectorError``, ``ServerDisconnectedError``) so reports stay comparable.

An abort check runs every ``LOAD_TEST_ABORT_POLL_SEC``: an abort closes what is in
flight and returns well inside ``LOAD_TEST_ABORT_WITHIN_SEC``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from functions.load.http_client import SHED, HttpClient
from functions.load.results import Seconds, SecondStats, breached, percentiles
from functions.load.scenarios import ENDPOINTS, Plan, plan_starts
from shared import thresholds as t

try:  # the event loop: uvloop's when installed (requirements.txt pins it)
    import uvloop

    _loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
except ImportError:  # pragma: no cover - the plain asyncio loop works the same, slower
    _loop_factory = None

AbortCheck = Callable[[], str | None]
"""Returns why the run must stop, or None. Called from a worker thread."""

SliceSink = Callable[[Seconds, "Progress"], None]
"""Receives finished seconds (and progress) as the shard goes. Called from a thread."""

_now = time.monotonic

"""The engine's clock (latency and schedule): full resolution, unlike uvloop's
``loop.time()``, which is the loop's cached millisecond."""


@dataclass
class Progress:
    shard: int
    elapsed_sec: float = 0.0
    scheduled: int = 0
    sent: int = 0
    completed: int = 0
    errors: int = 0
    dropped: int = 0
    late: int = 0
    shed: int = 0
    in_flight: int = 0
    recent_p95_ms: float = 0.0
    """p95 of the last whole second (the live display)."""


def progress_doc(progress: Progress) -> dict[str, float | int]:
    """The Firestore/wire form (camelCase) of a shard's progress."""
    return {
        "shard": progress.shard,
        "elapsedSec": progress.elapsed_sec,
        "scheduled": progress.scheduled,
        "sent": progress.sent,
        "completed": progress.completed,
        "errors": progress.errors,
        "dropped": progress.dropped,
        "late": progress.late,
        "shed": progress.shed,
        "inFlight": progress.in_flight,
        "recentP95Ms": progress.recent_p95_ms,
    }


@dataclass
class Outcome:
    status: str
    """``completed`` or ``aborted``."""
    abort_reason: str | None
    elapsed_sec: float
    """Schedule time covered (the whole duration unless aborted)."""
    progress: Progress
    abort_latency_sec: float | None = None
    """From noticing the abort to returning."""


@dataclass
class _State:
    seconds: Seconds = field(default_factory=dict)
    abort_reason: str | None = None
    abort_seen_at: float | None = None

    def second(self, sec: int) -> SecondStats:
        stats = self.seconds.get(sec)
        if stats is None:
            stats = self.seconds[sec] = SecondStats()
        return stats


# ------------------------------------------------------------------ the shard


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run`` on uvloop's loop when it is installed."""
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(coro)


class ShardRunner:
    """Runs shard ``shard`` of ``plan`` for run ``run_id``."""

    def __init__(
        self,
        run_id: str,
        plan: Plan,
        shard: int,
        *,
        abort_check: AbortCheck | None = None,
        on_breach: Callable[[str], None] | None = None,
        sink: SliceSink | None = None,
        on_tick: Callable[[Progress], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.plan = plan
        self.shard = shard
        self._abort_check = abort_check
        self._on_breach = on_breach
        self._sink = sink
        self._on_tick = on_tick
        self._state = _State()
        self.progress = Progress(shard)
        self._rng = random.Random(f"{run_id}:{shard}")
        self._http: HttpClient | None = None

    # ---------------------------------------------------------------- running

    def run(self, start_at: float | None = None) -> tuple[Outcome, Seconds]:
        """Run to the end (or an abort); returns the outcome and any seconds not yet
        handed to the sink (all of them when there is no sink)."""
        result: tuple[Outcome, Seconds] = _run(self.run_async(start_at))
        return result

    async def run_async(self, start_at: float | None = None) -> tuple[Outcome, Seconds]:
        loop = asyncio.get_running_loop()
        if start_at is not None:
            await self._wait_until(start_at)
        t0 = _now()
        self._http = http = HttpClient(self.plan.target, self.run_id, self._record, loop)
        watcher = asyncio.create_task(self._watch(t0))
        try:
            await self._schedule(t0)
            await self._drain()
        finally:
            watcher.cancel()
            await http.close()
        state = self._state
        aborted = state.abort_reason is not None
        elapsed = min(_now() - t0, float(self.plan.duration_sec))
        # a completed shard covered the whole schedule, even when its last start came early
        self.progress.elapsed_sec = round(elapsed if aborted else self.plan.duration_sec, 3)
        self.progress.in_flight = 0
        outcome = Outcome(
            status="aborted" if aborted else "completed",
            abort_reason=state.abort_reason,
            elapsed_sec=elapsed if aborted else float(self.plan.duration_sec),
            progress=self.progress,
            abort_latency_sec=(
                time.monotonic() - state.abort_seen_at if state.abort_seen_at else None
            ),
        )
        remaining, state.seconds = state.seconds, {}
        if self._sink is not None and remaining:
            await asyncio.to_thread(self._sink, remaining, self.progress)
            remaining = {}
        return outcome, remaining

    def abort(self, reason: str) -> None:
        """Stop from the inside (tests, signal handlers on the loop's thread)."""
        if self._state.abort_reason is None:
            self._state.abort_reason = reason
            self._state.abort_seen_at = time.monotonic()

    async def _wait_until(self, start_at: float) -> None:
        while (delay := start_at - time.time()) > 0 and self._state.abort_reason is None:
            await asyncio.sleep(min(delay, t.LOAD_TEST_ABORT_POLL_SEC))

    async def _schedule(self, t0: float) -> None:
        """Starts every scheduled start on time: one timer callback starts all that are
        due (never one early), then re-arms for the next; returns when the schedule
        ends or the run is aborted."""
        loop = asyncio.get_running_loop()
        plan = self.plan
        late_after = t.LOAD_TEST_LATE_START_MS / 1000.0
        drop_after = t.LOAD_TEST_DROP_AFTER_MS / 1000.0
        abort_poll = t.LOAD_TEST_ABORT_POLL_SEC
        state = self._state
        progress = self.progress
        http = self._http
        assert http is not None
        busy = http.busy
        max_in_flight = plan.max_in_flight
        payloads = {name: ENDPOINTS[name].payload for name, _ in plan.mix}
        rng, run_id = self._rng, self.run_id
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        # the shape's schedule and mix, or a recorded plan's minutes (scenarios.plan_starts)
        offsets: Iterator[tuple[int, float, str]] = plan_starts(plan, self.shard)
        done: asyncio.Future[None] = loop.create_future()
        upcoming = next(offsets, None)
        stats: SecondStats | None = None
        stats_sec = -1

        def tick() -> None:
            nonlocal upcoming, stats, stats_sec
            if state.abort_reason is not None:
                done.set_result(None)
                return
            now = _now()
            while upcoming is not None:
                index, offset, name = upcoming
                due = t0 + offset
                if due > now:
                    # whole milliseconds, rounded up (as asyncio's selector does): the
                    # loop's timers are millisecond ones, and a start is never made early
                    delay = min(math.ceil((due - now) * 1000) / 1000, abort_poll)
                    loop.call_later(delay, tick)
                    return
                sec = int(offset)
                if sec != stats_sec or stats is None:
                    stats, stats_sec = state.second(sec), sec
                stats.scheduled += 1
                progress.scheduled += 1
                behind = now - due
                if behind > drop_after or len(busy) >= max_in_flight:
                    stats.dropped += 1
                    progress.dropped += 1
                else:
                    if behind > late_after:
                        stats.late += 1
                        progress.late += 1
                    stats.sent += 1
                    progress.sent += 1
                    body = payloads[name](rng, run_id, index)
                    body["loadRunId"] = run_id
                    http.start(name, sec, due, dumps(body).encode())
                upcoming = next(offsets, None)
                now = _now()
            done.set_result(None)

        tick()
        await done

    def _record(self, name: str, sec: int, due: float, kind: str | None) -> None:
        """One finished request: its latency from the scheduled start, and its error (a
        shed request: counted as shed, no latency)."""
        stats = self._state.second(sec)
        self.progress.completed += 1
        if kind == SHED:
            stats.shed[name] += 1
            self.progress.shed += 1
            return
        stats.record(name, int((_now() - due) * 1_000_000))
        if kind is not None:
            stats.errors[f"{name}|{kind}"] += 1
            self.progress.errors += 1

    async def _drain(self) -> None:
        """Wait for what is in flight (up to the timeout); the caller closes the rest."""
        state = self._state
        http = self._http
        assert http is not None
        deadline = _now() + self.plan.timeout_sec + 1.0
        while http.busy and _now() < deadline and state.abort_reason is None:
            await asyncio.sleep(min(0.01 * (1 + len(http.busy)), t.LOAD_TEST_ABORT_POLL_SEC))

    # ---------------------------------------------------------------- watching

    async def _watch(self, t0: float) -> None:
        """Abort checks, timeouts, abort-on-fail, and handing finished seconds to the sink."""
        state = self._state
        plan = self.plan
        http = self._http
        assert http is not None
        last_flush = _now()
        evaluated = -1
        shown = -1
        streak = 0
        while True:
            await asyncio.sleep(t.LOAD_TEST_ABORT_POLL_SEC)
            http.expire(plan.timeout_sec)
            now = _now() - t0
            self.progress.elapsed_sec = round(min(now, plan.duration_sec), 3)
            self.progress.in_flight = len(http.busy)
            last = state.seconds.get(int(now) - 1)
            if last is not None and last.hist and int(now) - 1 != shown:
                shown = int(now) - 1  # once per second: that second is whole by now
                self.progress.recent_p95_ms = percentiles(last.total(), (95,))[0] / 1000
            if self._on_tick is not None:
                self._on_tick(self.progress)
            if self._abort_check is not None and state.abort_reason is None:
                reason = await asyncio.to_thread(self._abort_check)
                if reason is not None:
                    self.abort(reason)
            if plan.abort_on_fail and state.abort_reason is None:
                finished = int(now) - 1
                while evaluated < finished:
                    evaluated += 1
                    stats = state.seconds.get(evaluated)
                    streak = streak + 1 if stats and breached(stats, plan.thresholds) else 0
                    if streak >= t.LOAD_TEST_BREACH_SUSTAIN_SEC:
                        why = f"thresholds breached for {streak} consecutive seconds"
                        self.abort(why)
                        if self._on_breach is not None:
                            await asyncio.to_thread(self._on_breach, why)
                        break
            if self._sink is not None and _now() - last_flush >= t.LOAD_TEST_SLICE_SEC:
                last_flush = _now()
                sealed_before = int(now - plan.timeout_sec) - 1
                done = {s: v for s, v in state.seconds.items() if s < sealed_before}
                for sec in done:
                    del state.seconds[sec]
                await asyncio.to_thread(self._sink, done, self.progress)
