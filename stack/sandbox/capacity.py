"""Each service's capacity: how many requests it serves at once, how many wait, and
what it does with one more (:func:`admission`); and the sample it pushes.

With several worker processes (:mod:`stack.sandbox.workers`) each worker holds its
:func:`portion` of every service's slots and queue (``share``), and the samples of all
workers are merged into one per service (:func:`merge_samples`)."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stack.constants import (
    LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE,
    LOAD_SANDBOX_QUEUE_PER_INSTANCE,
    LOAD_SANDBOX_QUEUE_WAIT_MAX_MS,
)


class Admission(enum.StrEnum):
    """What a service does with an arriving request."""

    RUN = "run"
    """A slot is free and nobody waits before it: served now."""
    QUEUE = "queue"
    """Every slot is busy but the queue has room: waits for a slot."""
    SHED = "shed"
    """The queue is full: answered 503 with ``Retry-After`` at once."""


def admission(in_use: int, waiting: int, limit: int, queue_limit: int) -> Admission:
    """The admission decision for one arriving request (first come, first served)."""
    if in_use < limit and waiting == 0:
        return Admission.RUN
    if waiting < queue_limit:
        return Admission.QUEUE
    return Admission.SHED


def portion(total: int, index: int, count: int) -> int:
    """Worker ``index`` of ``count``'s part of ``total`` slots: the parts differ by at
    most one and add up to ``total``."""
    return total // count + (1 if index < total % count else 0)


class Capacity:
    """A resizable bound on concurrent requests, with a bounded queue in front.

    A waiter is a future in a FIFO; a finished request hands its slot straight to the
    first waiter (no wake-up of everyone). A waiter still waiting after ``wait_max_sec``
    gives up (shed). ``instances`` is the service's whole count; with ``share`` (worker
    index, workers) this process holds its :func:`portion` of the slots (at least one)
    and of the queue."""

    def __init__(
        self,
        instances: int,
        per_instance: int = LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE,
        queue_per_instance: int = LOAD_SANDBOX_QUEUE_PER_INSTANCE,
        wait_max_sec: float = LOAD_SANDBOX_QUEUE_WAIT_MAX_MS / 1000,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        self.instances = instances
        self.share = share
        self.per_instance = per_instance
        self.queue_per_instance = queue_per_instance
        self.wait_max_sec = wait_max_sec
        self.in_use = 0
        self.shed = 0
        """Requests shed since start."""
        self._waiters: deque[asyncio.Future[bool]] = deque()

    @property
    def limit(self) -> int:
        index, count = self.share
        if count == 1:
            return self.instances * self.per_instance
        return max(1, portion(self.instances * self.per_instance, index, count))

    @property
    def queue_limit(self) -> int:
        index, count = self.share
        return portion(self.instances * self.queue_per_instance, index, count)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """True with a slot held (call :meth:`release`), False when shed."""
        decision = admission(self.in_use, len(self._waiters), self.limit, self.queue_limit)
        if decision is Admission.RUN:
            self.in_use += 1
            return True
        if decision is Admission.SHED:
            self.shed += 1
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.wait_max_sec, self._give_up, waiter)
        try:
            granted = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        if not granted:
            self.shed += 1
        return granted

    def _give_up(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(False)
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Frees a slot: handed to the first waiter, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.in_use -= 1

    def resize(self, instances: int) -> None:
        self.instances = instances
        while self._waiters and self.in_use < self.limit:
            self.in_use += 1
            self.release()  # hands the new slot to the first waiter
        # when none was waiting, release() took back the slot it was given


@dataclass
class ServiceSim:
    service_id: str
    capacity: Capacity
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    busy_sec: float = 0.0

    def take(self) -> dict[str, Any]:
        """This process's counts since the last take (and they are reset): what
        :func:`merge_samples` makes the pushed sample of."""
        raw = {
            "requests": self.requests,
            "errors": self.errors,
            "latenciesMs": self.latencies_ms,
            "busySec": self.busy_sec,
            "limit": self.capacity.limit,
            "waiting": self.capacity.waiting,
        }
        self.requests = self.errors = 0
        self.latencies_ms = []
        self.busy_sec = 0.0
        return raw

    def sample(self, interval_sec: float) -> dict[str, Any] | None:
        """The sample to push (counts reset), or None when nothing happened."""
        return merge_samples(self.service_id, [self.take()], interval_sec)


def merge_samples(
    service_id: str, raws: list[dict[str, Any]], interval_sec: float
) -> dict[str, Any] | None:
    """One service's sample from the :meth:`ServiceSim.take` of every worker: counts and
    queue depth summed, p95 over all latencies, CPU over all slots; None when idle."""
    requests = sum(int(r["requests"]) for r in raws)
    waiting = sum(int(r["waiting"]) for r in raws)
    if not requests and not waiting:
        return None
    lat = sorted(ms for r in raws for ms in r["latenciesMs"])
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))] if lat else 0.0
    capacity_sec = interval_sec * sum(int(r["limit"]) for r in raws)
    busy_sec = sum(float(r["busySec"]) for r in raws)
    return {
        "serviceId": service_id,
        "requests": requests,
        "errors": sum(int(r["errors"]) for r in raws),
        "p95LatencyMs": round(p95, 3),
        "cpuPct": round(min(100.0, 100.0 * busy_sec / capacity_sec), 2),
        "queueDepth": waiting,
    }
