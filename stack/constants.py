"""Numbers only the tooling uses: the local stack (the sandbox, the process supervisor, the
load-test CLI) and the claims the rehearsal, the benchmarks and the tests check.

They are not in :mod:`shared.thresholds`, whose every constant the deployed bundle uses
(``tests/shared/test_thresholds.py``): a number here never ships. Same naming rule: the
unit is in the name.
"""

from __future__ import annotations

from typing import Final

from shared import thresholds as t

# The spec's promises the rehearsal and the tests check ----------------------------------

DDOS_DETECTION_INTERVAL_SEC: Final[int] = 60
"""The detector runs every minute; detection must happen within this time."""

ROLLBACK_WITHIN_SEC: Final[int] = 60
"""Detect-and-rollback budget from the first minute of data showing a fault."""

LOAD_TEST_ABORT_WITHIN_SEC: Final[float] = 2.0
"""Every worker stops within this time of an abort."""

CANARY_TASK_DELAY_SEC: Final[float] = 5.0
"""How late Cloud Tasks may dispatch a scheduled task, allowed for in the worst case (it
dispatches at ``scheduleTime`` best effort; the chain's next tick is enqueued first)."""

CANARY_ROLLBACK_WORST_CASE_SEC: Final[float] = (
    t.CANARY_FAST_CHECK_INTERVAL_SEC
    + CANARY_TASK_DELAY_SEC
    + t.CANARY_FAST_CHECK_BUDGET_SEC
    + t.DEPLOY_TRAFFIC_TIMEOUT_SEC
)
"""From the moment a breach is in the data to 100 % back on stable, at worst: a tick just
missed it (interval), the next one dispatched late, judged slowly, and the traffic write
took its whole deadline: 10 + 5 + 15 + 20 = 50 s, inside the spec's minute. Metrics must be
*in the data*: Cloud Monitoring publishes Cloud Run points up to 3 minutes late, the
business events (payouts, ledger, auth) and pushed metrics are there at once."""

# The load-test CLI ------------------------------------------------------------------------

LOAD_TEST_PROGRESS_EVERY_SEC: Final[float] = 5.0
"""``pack391 loadtest`` progress when stderr is not a terminal: one line this often."""

# The load-test sandbox (stack/sandbox.py) -------------------------------------------------

LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE: Final[int] = 8
"""Sandbox: requests one simulated instance serves at once (capacity = instances x this)."""

LOAD_SANDBOX_SWIPES_PER_USER_PER_SEC: Final[int] = 10
"""Sandbox: the swipe rate limiter's allowance per user per second."""

LOAD_SANDBOX_AI_DELAY_MS: Final[tuple[float, float]] = (40.0, 120.0)
"""Sandbox: the model-like delay range of an AI companion reply."""

LOAD_SANDBOX_METRICS_INTERVAL_SEC: Final[float] = 10.0
"""Sandbox: how often each simulated service pushes its metrics sample."""

LOAD_SANDBOX_QUEUE_PER_INSTANCE: Final[int] = 8
"""Sandbox admission: requests one simulated instance holds waiting beyond those it
serves (queue = instances x this). A request past it is shed at once with 503 and
``Retry-After``, as Cloud Run answers when over capacity: shed rather than queue, so an
overload leaves no backlog behind it."""

LOAD_SANDBOX_QUEUE_WAIT_MAX_MS: Final[float] = 500.0
"""Sandbox admission: a queued request still waiting after this long is shed (503)."""

LOAD_SANDBOX_SHED_RETRY_AFTER_SEC: Final[int] = 1
"""Sandbox admission: the ``Retry-After`` of a shed request."""

LOAD_SANDBOX_BACKEND_TIMEOUT_SEC: Final[float] = 5.0
"""Sandbox: the bound on waiting for a pooled Redis connection and on one Firestore
call (past it: 503 with ``Retry-After``, never a pile-up)."""

# The local stack's processes (stack/platform/procs.py, logs.py) --------------------------

STACK_LOG_MAX_BYTES: Final[int] = 10 * 1024 * 1024
"""Local stack: a child's log file (``.local/logs/NAME.log``) past this size is moved to
``NAME.log.1`` (replacing the previous one) and started afresh."""

STACK_LOG_CHECK_SEC: Final[float] = 2.0
"""Local stack: how often the log files' sizes are checked."""
