"""The service registry, as ``pack391_serviceHealthCheck`` lists it, answers stale while
Firestore stalls; the probes and metrics are read now (docs/reliability.md, "Stale
answers"). The real emulator, paused (SIGSTOP), through the callable protocol."""

from __future__ import annotations

import pytest

from shared.stale import STALE_READ_WAIT_SEC
from tests.conftest import Caller, Pauser
from tests.shared.stale_helpers import (
    SLACK_SEC,
    assert_unavailable,
    ok,
    short_budget,  # noqa: F401 (the fixture, by name)
    timed,
)

pytestmark = pytest.mark.usefixtures("short_budget")

HEALTH = "pack391_serviceHealthCheck"
REGISTRY_FIELDS = ("serviceId", "currentInstances", "isolation", "lastDecision")
"""What a health report takes from the registry (the rest is probed or measured now)."""


def test_service_registry_answers_stale_during_a_pause_and_fresh_after(
    caller: Caller, firestore_paused: Pauser
) -> None:
    ok(caller, "pack391_initScaling", {})
    warm = ok(caller, HEALTH, {})
    assert (warm["stale"], warm["staleAgeSec"]) == (False, None)
    with firestore_paused():
        during, took = timed(caller, HEALTH, {})
        unread, took_unread = timed(caller, HEALTH, {"serviceId": "api-gateway"})
    report = during.result
    assert took < STALE_READ_WAIT_SEC + SLACK_SEC, f"answered after {took:.2f}s"
    assert report["stale"] is True
    assert STALE_READ_WAIT_SEC - 0.05 <= report["staleAgeSec"] < took + 5.0
    assert [{k: s[k] for k in REGISTRY_FIELDS} for s in report["services"]] == [
        {k: s[k] for k in REGISTRY_FIELDS} for s in warm["services"]
    ]
    assert_unavailable(unread, took_unread)  # one service: another key, never read

    after = ok(caller, HEALTH, {"serviceId": "api-gateway"})
    assert (after["stale"], after["staleAgeSec"]) == (False, None)
    assert [s["serviceId"] for s in after["services"]] == ["api-gateway"]
