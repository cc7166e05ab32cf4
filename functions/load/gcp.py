"""The shard dispatcher deployed: Cloud Tasks, through firebase-admin's task queue
client (the :class:`functions.load.ports.Dispatcher` port)."""

from __future__ import annotations

import functools

import firebase_admin
from firebase_admin import functions as admin_functions

from shared.gcp import budget

TASK_FUNCTION = "pack391ExecuteLoadTest"
"""The task-queue function, and so its Cloud Tasks queue id (letters, digits, hyphens:
no underscore, hence not ``pack391_*``; see :mod:`functions.load.edges`)."""

DISPATCH_DEADLINE_SEC = 1800
"""Each shard's task may run this long: Cloud Tasks' maximum for HTTP targets, the task
function's own timeout, and longer than the longest run plus its start delay."""


ENQUEUE_WAIT_SEC = 30.0
"""The longest one enqueue is waited for, within the call's budget."""


class TaskQueueDispatcher:
    """Production: one Cloud Tasks task per shard, dispatched to the task-queue function
    ``pack391ExecuteLoadTest`` (firebase-admin's task queue client)."""

    name = "tasks"

    def __init__(self, region: str, app: firebase_admin.App | None = None) -> None:
        self._region = region
        self._app = app

    def dispatch(self, run_id: str, shards: int, start_at: float) -> None:
        queue = admin_functions.task_queue(
            f"locations/{self._region}/functions/{TASK_FUNCTION}", app=self._app
        )
        # Cloud Tasks cuts an HTTP task off after its dispatch deadline, 10 minutes unless
        # the task says otherwise (firebase-admin's TaskOptions.dispatch_deadline_seconds,
        # 15 s to 30 min; Cloud Tasks API, Task.dispatchDeadline), while a run may last
        # LOAD_TEST_MAX_DURATION_SEC (25 min) after its start delay: ask for the most.
        options = admin_functions.TaskOptions(dispatch_deadline_seconds=DISPATCH_DEADLINE_SEC)
        for shard in range(shards):
            # firebase-admin 7.7 posts the task body as json(data) as given, while the task
            # function (the callable protocol) reads {"data": ...}: wrap it here.
            # firebase-admin takes no timeout (120 s per request, retried): waited for
            # within the call's budget (a late shard is counted by the run's reaper)
            task = {"data": {"runId": run_id, "shard": shard, "startAt": start_at}}
            budget.bounded(
                budget.CLOUD_TASKS,
                ENQUEUE_WAIT_SEC,
                functools.partial(queue.enqueue, task, options),
            )
