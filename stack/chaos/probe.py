"""What ``pack391 chaos FAULT`` calls while the fault is on, and how long each answer
took: a few functions of the bundle, each called again and again from a thread of its
own, every call recorded as a :class:`stack.chaos_check.Call` and held to its function's
budget (:func:`stack.chaos_check.within_budget`) once the fault is undone.

The probes read; the one that writes (a manual scale up by 0, through the Cloud Run
stand-in) runs only for the Cloud Run faults. A probe waits :data:`PAUSE_SEC` between its
calls, so the probes together stay far below the front door's single-source threshold
(600/min) whatever else the stack serves.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from stack import chaos_check as cc
from stack.chaos.config import CLOUD_RUN_FAULTS, SCALED_SERVICE
from stack.platform.handle import StackHandle
from stack.platform.tokens import emulator_id_token, role_token

PAUSE_SEC = 0.5
"""Between one probe call's answer and the next call of the same probe."""
CLIENT_TIMEOUT_SEC = 30.0
"""The probe's own patience: past it a call is recorded ``timeout`` (then over any
budget of these functions but the manual scale's, which the stand-in's stall bounds)."""


@dataclass(frozen=True)
class Probe:
    function: str
    role: str
    """``user`` (a signed-in user's token) or a role of ``stack.platform.tokens``."""
    data: Mapping[str, Any]
    faults: tuple[str, ...] | None = None
    """Only during these faults (None: every fault)."""
    keep: tuple[str, ...] = field(default=())


_SCALE_BY_NOTHING = {
    "serviceId": SCALED_SERVICE,
    "action": "scale_up",
    "instanceCount": 0,
    "reason": "pack391 chaos: a manual scale through the Cloud Run stand-in",
}

PROBES: tuple[Probe, ...] = (
    Probe("pack391_checkRateLimit", "user", {"endpointClass": "general"}, keep=("allowed",)),
    Probe("pack391_checkMarketAccess", "user", {"country": "NL"}),
    Probe("pack391_getMarketControls", "ops", {}),
    Probe("pack391_getOpsDashboard", "ops", {}),
    Probe("pack391_manualScale", "admin", _SCALE_BY_NOTHING, faults=CLOUD_RUN_FAULTS),
)
"""Rate limiting (Redis), the market gate and the market controls (Firestore), the ops
dashboard (Firestore and Redis), and a manual scale (Cloud Run) during its faults."""


def register_stand_in(handle: StackHandle, service: str = SCALED_SERVICE) -> None:
    """Make sure ``service``'s instance changes go through the Cloud Run stand-in (the
    sandbox's resize hook), as the sandbox's own metrics push does: the registration is
    kept in Redis, which ``redis-kill`` empties, and a service without traffic pushes
    nothing to register it again (its manual scale would then reach no stand-in at all).
    RuntimeError when the push path refuses."""
    response = requests.post(
        handle.callable_url("pack391_reportServiceMetrics"),
        json={"data": {"serviceId": service, "resizeHookUrl": f"{handle.sandbox_url}/__resize"}},
        headers={"Authorization": f"Bearer {role_token(handle.project, 'ops', 'chaos-probe')}"},
        timeout=CLIENT_TIMEOUT_SEC,
    )
    if response.status_code != 200:
        raise RuntimeError(f"the resize hook of {service} not registered: {response.text}")


def probes_for(fault: str) -> list[Probe]:
    """The probes that run during ``fault``."""
    return [p for p in PROBES if p.faults is None or fault in p.faults]


class Prober:
    """Calls each probe from a thread of its own until :meth:`stop`; the calls made."""

    def __init__(self, handle: StackHandle, probes: Sequence[Probe]) -> None:
        self._handle = handle
        self._probes = list(probes)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._calls: list[cc.Call] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(p,), name=f"probe-{p.function}", daemon=True)
            for p in self._probes
        ]
        run = uuid.uuid4().hex[:8]
        self._tokens = {
            p.function: (
                emulator_id_token(handle.project, f"chaos-probe-{run}", {})
                if p.role == "user"
                else role_token(handle.project, p.role, f"chaos-probe-{p.role}")
            )
            for p in self._probes
        }

    def start(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def halt(self) -> None:
        """No new call from now (those in flight go on)."""
        self._stop.set()

    def stop(self, wait_sec: float = CLIENT_TIMEOUT_SEC + 5) -> list[cc.Call]:
        """No new call; wait (bounded) for those in flight; every call, by start."""
        self._stop.set()
        deadline = time.monotonic() + wait_sec
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return sorted(self._calls, key=lambda c: c.t_start)

    def _loop(self, probe: Probe) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                call = self._call(session, probe)
                with self._lock:
                    self._calls.append(call)
                self._stop.wait(PAUSE_SEC)

    def _call(self, session: requests.Session, probe: Probe) -> cc.Call:
        start = time.time()
        http: int | None = None
        body: Any = None
        error: str | None = None
        try:
            response = session.post(
                self._handle.callable_url(probe.function),
                json={"data": dict(probe.data)},
                headers={"Authorization": f"Bearer {self._tokens[probe.function]}"},
                timeout=CLIENT_TIMEOUT_SEC,
            )
            http = response.status_code
            try:
                body = response.json()
            except ValueError:
                body = None
        except requests.Timeout:
            error = "timeout"
        except requests.ConnectionError:
            error = "connection"
        reason: str | None = None
        retry: float | None = None
        result: dict[str, Any] = {}
        if error is None:
            error, reason, retry, result = cc.callable_answer(body, probe.keep)
        return cc.Call("probe", probe.function, start, time.time(), http, error, reason, retry,
                       result, None, probe.function)  # fmt: skip


def summary(
    calls: Sequence[cc.Call], window: cc.Window, budgets: Mapping[str, float]
) -> tuple[cc.Verdict, list[str]]:
    """The answer-time verdict over the probes' calls, and lines to print: each function's
    calls, longest answer and budget."""
    verdict = cc.within_budget(calls, budgets)
    lines = [f"  {'function':<28} {'calls':>5} {'longest':>9} {'budget':>7}  outcomes"]
    for fn, row in cc.longest_answers(calls, window, budgets).items():
        budget = "-" if row["budgetSec"] is None else f"{row['budgetSec']:g}s"
        outcomes: dict[str, int] = {}
        for call in calls:
            if call.function == fn:
                label = cc.outcome(call)
                outcomes[label] = outcomes.get(label, 0) + 1
        counts = " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        lines.append(
            f"  {fn:<28} {row['calls']:>5} {row['maxMs'] / 1000:>8.2f}s {budget:>7}  {counts}"
        )
    mark = "held  " if verdict.held else "BROKEN"
    lines.append(f"  {mark} {verdict.name}: {verdict.detail}")
    return verdict, lines
