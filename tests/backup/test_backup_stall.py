"""The scheduled backup while Firestore stalls: the
run answers within one catalog step's budget, is recorded as skipped, records no backup
(least of all a complete one) and writes no files; the next run after the stall takes the
backup. The emulator is paused with SIGSTOP (``firestore_paused``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shared import collections
from shared.edge_budget import skipped_runs
from shared.firestore import get_db
from tests.backup.conftest import seed
from tests.conftest import Caller, Pauser

BACKUP = "pack391_backupFirestore"

BUDGET_MS = 1500
"""``PACK391_BUDGET_SCHEDULED_MS`` here: a catalog step waits at most this long
(``shared.firestore.step``; 10 s in production, while the run itself may
take up to its 30 min timeout)."""

SLACK_SEC = 1.5
"""What a skipped run may take beyond one step's budget: building the store, the client
library's last retry pause after the deadline, and a shared 2-core machine."""


def catalog() -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in get_db().collection(collections.BACKUPS).stream()]


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_stalled_backup_records_nothing_and_the_next_one_completes(
    caller: Caller,
    configured: Path,
    firestore_paused: Pauser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = seed(get_db())
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(BUDGET_MS))
    with firestore_paused():
        started = time.monotonic()
        status = caller.trigger(BACKUP)
        took = time.monotonic() - started
    assert status == 200  # skipped, not failed: no retry into the stall
    assert took < BUDGET_MS / 1000 + SLACK_SEC, f"the run took {took:.2f}s"
    assert skipped_runs()[BACKUP]["dependency"] == "firestore"
    # Never complete. A `running` claim may still appear: a write the run sent before its
    # budget ran out can reach Firestore when it answers again (the emulator serves what it
    # had received; Firestore may too), and is then left for housekeeping to fail.
    assert [r for r in catalog() if r["status"] != "running"] == []
    assert files(configured) == []

    started = time.monotonic()
    assert caller.trigger(BACKUP) == 200  # the stall is over
    assert time.monotonic() - started < 10
    [record] = [r for r in catalog() if r["status"] != "running"]
    assert record["status"] == "complete"
    assert record["documentCount"] >= count
    assert files(configured) != []
