"""The shard dispatcher of the local stack: one worker process per shard (the
:class:`functions.load.ports.Dispatcher` port)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent.parent

_children: list[subprocess.Popen[bytes]] = []
"""Local worker processes still running (reaped on the next dispatch)."""


class LocalProcessDispatcher:
    """The local stack: one worker process per shard, each calling the shard executor
    (the body of ``pack391ExecuteLoadTest``) directly."""

    name = "local"

    def dispatch(self, run_id: str, shards: int, start_at: float) -> None:
        _children[:] = [c for c in _children if c.poll() is None]
        for shard in range(shards):
            payload = json.dumps({"runId": run_id, "shard": shard, "startAt": start_at})
            _children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "functions.load.worker", payload], cwd=SOURCE_DIR
                )
            )


def wait_local_workers(timeout_sec: float) -> None:
    """Wait for the local worker processes (tests, shutdown)."""
    for child in list(_children):
        child.wait(timeout=timeout_sec)
    _children[:] = [c for c in _children if c.poll() is None]
