"""The DDoS detector while Firestore stalls: a
flood in the counts (Redis) is not blocked while the allowlist (Firestore) cannot be read;
the run answers within its budget, is recorded as skipped, and the next run after the
stall blocks the source. The emulator is paused with SIGSTOP (``firestore_paused``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import collections
from shared.edge_budget import skipped_runs
from shared.firestore import get_db
from shared.ratelimit import keys
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.limiter import Subject
from tests.conftest import Caller, Pauser
from tests.ddos.test_ddos_functions import crowd, drive
from tests.redis_now import redis_now

DETECT = "pack391_detectDDoS"

BUDGET_MS = 1500
"""The run's budget here (``PACK391_BUDGET_SCHEDULED_MS``; 45 s in production)."""

SLACK_SEC = 1.5
"""What a skipped run may take beyond its budget: the Redis reads before the stalled step
(milliseconds), the client library's last retry pause, and a shared 2-core machine."""

ATTACKER = "203.0.113.66"

MINUTE_MARGIN_SEC = 6
"""The traffic is written into the last complete minute; with less than this left of the
current one, the test starts on the next, so the runs judge the minute it wrote."""


def flood_last_minute() -> None:
    """Five quiet minutes, then one address flooding the last complete minute."""
    now = datetime.now(UTC)
    if 60 - now.second < MINUTE_MARGIN_SEC:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.05)  # a wait of known length
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    for m in range(6, 1, -1):
        drive(t0 - timedelta(minutes=m), 50, 300, crowd(40))
    attacker = Subject(None, ClientInfo(ATTACKER, "PL", "curl"))
    drive(t0 - timedelta(minutes=1), 40, 1500, lambda i: attacker)


def docs(name: str) -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in get_db().collection(name).stream()]


def blocked() -> bool:
    return bool(redis_now().exists(keys.block("ddos", "ip", ATTACKER)))


def test_a_flood_is_not_blocked_while_firestore_stalls_and_is_after(
    caller: Caller, firestore_paused: Pauser, monkeypatch: pytest.MonkeyPatch
) -> None:
    flood_last_minute()
    monkeypatch.setenv("PACK391_BUDGET_SCHEDULED_MS", str(BUDGET_MS))
    monkeypatch.setenv("PACK391_FIRESTORE_STEP_MAX_MS", str(BUDGET_MS))
    with firestore_paused():
        started = time.monotonic()
        status = caller.trigger(DETECT)
        took = time.monotonic() - started
    assert status == 200
    assert took < BUDGET_MS / 1000 + SLACK_SEC, f"the run took {took:.2f}s"
    assert skipped_runs()[DETECT]["dependency"] == "firestore"
    # decided nothing: no block, no DDoS mode, nothing recorded
    assert not blocked()
    assert not redis_now().exists(keys.DDOS_MODE)
    assert docs(collections.BLOCKS) == []
    assert docs(collections.DDOS_DETECTIONS) == []
    assert docs(collections.ALERTS) == []

    started = time.monotonic()
    assert caller.trigger(DETECT) == 200  # the stall is over
    assert time.monotonic() - started < 10
    assert blocked()
    assert [(b["subject"], b["kind"]) for b in docs(collections.BLOCKS)] == [(ATTACKER, "ddos")]
    kinds = {(d["kind"], d["severity"]) for d in docs(collections.DDOS_DETECTIONS)}
    assert ("single_source_flood", "critical") in kinds
