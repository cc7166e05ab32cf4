"""Function timeouts of the scaling area, from the deadlines of what they wait on.

Every wait on Google is bounded (:mod:`shared.thresholds`):

- ``U`` = :data:`~shared.thresholds.SCALE_OPERATION_TIMEOUT_SEC` (60 s): one Cloud Run
  update, from sending it to its operation being done;
- ``R`` = :data:`~shared.thresholds.CLOUD_RUN_READ_TIMEOUT_SEC` (10 s): one Cloud Run read;
- ``M`` = :data:`~shared.thresholds.MONITORING_READ_TIMEOUT_SEC` (10 s): one Cloud
  Monitoring query, at most 4 per service (CPU, latency, requests, a worker's queue), one
  after the other;
- ``F`` = :data:`~shared.thresholds.FIRESTORE_STEP_BUDGET_SEC` (10 s): one Firestore step
  (a read or one transaction);
- Redis calls time out in ``PACK391_REDIS_TIMEOUT_MS`` (50 ms): nothing here.

**The scale guard** (``pack391_scaleGuard``) works on the registry's ``N`` services at
once, ``P`` = :data:`~shared.thresholds.CLOUD_RUN_MAX_PARALLEL_UPDATES` (8) at a time
(:func:`shared.gcp.cloudrun.in_parallel`), so ``ceil(N / P)`` waves; ``N`` = 7 (the spec's
services: :data:`~shared.thresholds.SCALING_SERVICE_INSTANCES`; ``initScaling`` refuses
others), one wave. One service's work, one after the other: its document (``F``), what
Cloud Run holds (``R``), its metrics (``4 M``), its intent (``F``), the update (``U``),
its outcome (``F``)::

    per service  = 3 F + R + 4 M + U           = 30 + 10 + 40 + 60  = 140 s
    guard        = F (registry) + waves x 140  = 10 + 1 x 140       = 150 s
    timeout      = 210 s: 60 s (29 %) of margin for the instance's start and the locks

The run waits for its services at most :func:`guard_wait_sec` (the timeout less the
registry read and a margin), so even a service whose every wait ran to its deadline is
reported as timed out before the platform stops the function, the others' decisions saved.
Run one after the other as before, the same 7 services could take 7 x 140 = 980 s.

**A manual scale** (``pack391_manualScale``): the service's lock, waited for up to
:data:`~shared.thresholds.MANUAL_SCALE_LOCK_WAIT_SEC` (5 s), then its document (``F``),
its intent (``F``), the update (``U``) and its outcome (``F``)::

    manual       = 5 + 3 F + U = 5 + 30 + 60 = 95 s
    timeout      = 120 s: 25 s (21 %) of margin

A run longer than the minute between guard runs is safe: the next run finds the guard's
lock held (renewed while this one works) and skips; the service's recorded intent holds any
other decider until the update is done or abandoned (``SCALE_OPERATION_TIMEOUT_SEC`` plus
one interval).
"""

from __future__ import annotations

import math

from shared import thresholds as t

MONITORING_QUERIES_PER_SERVICE = 4
"""CPU, latency, requests by class and (workers) the queue's depth."""

FIRESTORE_STEPS_PER_SERVICE = 3
"""The service's document, its intent, its outcome."""

GUARD_TIMEOUT_SEC = 210
"""``timeout_sec`` of ``pack391_scaleGuard``."""

MANUAL_SCALE_TIMEOUT_SEC = 120
"""``timeout_sec`` of ``pack391_manualScale``."""

GUARD_WAIT_MARGIN_SEC = 30.0
"""What the guard keeps of its timeout after waiting for its services: the instance's own
start, the run's locks, logging its report."""


def per_service_sec(operation_sec: float = t.SCALE_OPERATION_TIMEOUT_SEC) -> float:
    """Worst case of one service's work in a guard run (every wait at its deadline)."""
    return (
        FIRESTORE_STEPS_PER_SERVICE * t.FIRESTORE_STEP_BUDGET_SEC
        + t.CLOUD_RUN_READ_TIMEOUT_SEC
        + MONITORING_QUERIES_PER_SERVICE * t.MONITORING_READ_TIMEOUT_SEC
        + operation_sec
    )


def guard_worst_case_sec(
    services: int = len(t.SCALING_SERVICE_INSTANCES),
    operation_sec: float = t.SCALE_OPERATION_TIMEOUT_SEC,
) -> float:
    """Worst case of a guard run over ``services`` services, in parallel waves."""
    waves = math.ceil(services / t.CLOUD_RUN_MAX_PARALLEL_UPDATES)
    return t.FIRESTORE_STEP_BUDGET_SEC + waves * per_service_sec(operation_sec)


def guard_wait_sec() -> float:
    """How long a guard run waits for its services' work before reporting the rest as timed
    out: its timeout less the registry read and :data:`GUARD_WAIT_MARGIN_SEC`."""
    return GUARD_TIMEOUT_SEC - t.FIRESTORE_STEP_BUDGET_SEC - GUARD_WAIT_MARGIN_SEC


def manual_scale_worst_case_sec(operation_sec: float = t.SCALE_OPERATION_TIMEOUT_SEC) -> float:
    """Worst case of a manual scale (every wait at its deadline)."""
    return (
        t.MANUAL_SCALE_LOCK_WAIT_SEC
        + FIRESTORE_STEPS_PER_SERVICE * t.FIRESTORE_STEP_BUDGET_SEC
        + operation_sec
    )
