"""The open-model load engine: one shard of a run.

Starts follow the plan's arrival schedule whatever the target does (like k6's
constant-arrival-rate executor and wrk2): a request is started at its scheduled time
without waiting for earlier ones, and its latency is measured from that scheduled
time, so a stalled target shows in the percentiles (no coordinated omission). A start
the generator makes more than ``LOAD_TEST_LATE_START_MS`` behind is ``late``; one it
cannot make at all (more than ``LOAD_TEST_DROP_AFTER_MS`` behind, or the in-flight
bound reached) is ``dropped``: both are counted apart from the target's errors.

One aiohttp session per shard (connection reuse, at most ``max_in_flight`` open),
a per-request timeout, and an abort check every ``LOAD_TEST_ABORT_POLL_SEC``: an
abort cancels what is in flight and returns well inside ``LOAD_TEST_ABORT_WITHIN_SEC``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from functions.load.results import Seconds, SecondStats, breached
from functions.load.scenarios import ENDPOINTS, RUN_HEADER, Plan, arrival_offsets, pick_endpoint
from shared import thresholds as t

AbortCheck = Callable[[], str | None]
"""Returns why the run must stop, or None. Called from a worker thread."""

SliceSink = Callable[[Seconds, "Progress"], None]
"""Receives finished seconds (and progress) as the shard goes. Called from a thread."""


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
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    abort_reason: str | None = None
    abort_seen_at: float | None = None

    def second(self, sec: int) -> SecondStats:
        stats = self.seconds.get(sec)
        if stats is None:
            stats = self.seconds[sec] = SecondStats()
        return stats


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

    # ---------------------------------------------------------------- running

    def run(self, start_at: float | None = None) -> tuple[Outcome, Seconds]:
        """Run to the end (or an abort); returns the outcome and any seconds not yet
        handed to the sink (all of them when there is no sink)."""
        return asyncio.run(self.run_async(start_at))

    async def run_async(self, start_at: float | None = None) -> tuple[Outcome, Seconds]:
        loop = asyncio.get_running_loop()
        if start_at is not None:
            await self._wait_until(start_at)
        t0 = loop.time()
        watcher = asyncio.create_task(self._watch(t0))
        connector = aiohttp.TCPConnector(limit=self.plan.max_in_flight, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=self.plan.timeout_sec)
        headers = {RUN_HEADER: self.run_id}
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=headers
            ) as session:
                await self._schedule(session, t0)
                await self._drain(t0)
        finally:
            watcher.cancel()
        state = self._state
        aborted = state.abort_reason is not None
        elapsed = min(loop.time() - t0, float(self.plan.duration_sec))
        # a completed shard covered the whole schedule, even when its last start came early
        self.progress.elapsed_sec = round(elapsed if aborted else self.plan.duration_sec, 3)
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

    async def _schedule(self, session: aiohttp.ClientSession, t0: float) -> None:
        loop = asyncio.get_running_loop()
        plan = self.plan
        late_after = t.LOAD_TEST_LATE_START_MS / 1000.0
        drop_after = t.LOAD_TEST_DROP_AFTER_MS / 1000.0
        state = self._state
        progress = self.progress
        for index, offset in arrival_offsets(
            plan.shape, plan.rps, plan.duration_sec, self.shard, plan.shards
        ):
            due = t0 + offset
            while (delay := due - loop.time()) > 0:
                if state.abort_reason is not None:
                    return
                await asyncio.sleep(min(delay, t.LOAD_TEST_ABORT_POLL_SEC))
            if state.abort_reason is not None:
                return
            sec = int(offset)
            stats = state.second(sec)
            stats.scheduled += 1
            progress.scheduled += 1
            behind = loop.time() - due
            if behind > drop_after or len(state.in_flight) >= plan.max_in_flight:
                stats.dropped += 1
                progress.dropped += 1
                continue
            if behind > late_after:
                stats.late += 1
                progress.late += 1
            stats.sent += 1
            progress.sent += 1
            name = pick_endpoint(plan.mix, index)
            task = asyncio.create_task(self._send(session, name, index, due, sec))
            state.in_flight.add(task)
            task.add_done_callback(state.in_flight.discard)

    async def _send(
        self, session: aiohttp.ClientSession, name: str, index: int, due: float, sec: int
    ) -> None:
        loop = asyncio.get_running_loop()
        endpoint = ENDPOINTS[name]
        body = endpoint.payload(self._rng, self.run_id, index)
        body["loadRunId"] = self.run_id
        kind: str | None = None
        try:
            async with session.request(
                endpoint.method, self.plan.target + endpoint.path, json=body
            ) as response:
                await response.read()
                if response.status >= 400:
                    kind = f"http_{response.status}"
        except TimeoutError:
            kind = "timeout"
        except aiohttp.ClientError as exc:
            kind = type(exc).__name__
        latency_us = int((loop.time() - due) * 1_000_000)
        stats = self._state.second(sec)
        stats.record(name, latency_us)
        self.progress.completed += 1
        if kind is not None:
            stats.errors[f"{name}|{kind}"] += 1
            self.progress.errors += 1

    async def _drain(self, t0: float) -> None:
        """Wait for what is in flight (up to the timeout), or cancel it on abort."""
        state = self._state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.timeout_sec + 1.0
        while state.in_flight and loop.time() < deadline and state.abort_reason is None:
            await asyncio.wait(set(state.in_flight), timeout=t.LOAD_TEST_ABORT_POLL_SEC)
        for task in list(state.in_flight):
            task.cancel()
        if state.in_flight:
            await asyncio.wait(set(state.in_flight), timeout=1.0)

    # ---------------------------------------------------------------- watching

    async def _watch(self, t0: float) -> None:
        """Abort checks, abort-on-fail, and handing finished seconds to the sink."""
        loop = asyncio.get_running_loop()
        state = self._state
        plan = self.plan
        last_flush = loop.time()
        evaluated = -1
        streak = 0
        while True:
            await asyncio.sleep(t.LOAD_TEST_ABORT_POLL_SEC)
            now = loop.time() - t0
            self.progress.elapsed_sec = round(min(now, plan.duration_sec), 3)
            self.progress.in_flight = len(state.in_flight)
            last = state.seconds.get(int(now) - 1)
            if last is not None and last.hist:
                self.progress.recent_p95_ms = last.total().get_value_at_percentile(95) / 1000
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
            if self._sink is not None and loop.time() - last_flush >= t.LOAD_TEST_SLICE_SEC:
                last_flush = loop.time()
                sealed_before = int(now - plan.timeout_sec) - 1
                done = {s: v for s, v in state.seconds.items() if s < sealed_before}
                for sec in done:
                    del state.seconds[sec]
                await asyncio.to_thread(self._sink, done, self.progress)
