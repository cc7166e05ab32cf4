"""The isolation track: a failing revision at 100 % until the guard isolates its service;
when a later act needs a healthy platform, the good revision back under a small load until
the guard's circuit recovers it (an isolated service fails every release's
``system_health`` gate, and a circuit with no traffic never closes); then the budgets act
on the budget it burnt (:mod:`stack.rehearse.acts.budgets`)."""

from __future__ import annotations

import logging
import threading
import time

from stack.rehearse.acts.budgets import Budgets
from stack.rehearse.acts.track import Track
from stack.rehearse.calls import post
from stack.rehearse.settings import (
    ATTACK_CANARY_CLAIMS,
    BUDGET_CLAIMS,
    ISOLATED_SERVICE,
)

log = logging.getLogger("pack391.rehearse")


class Isolation(Track):
    """The ``isolate`` act, then ``recover`` and ``budget_freeze``."""

    def isolation(self) -> None:
        try:
            self._isolation()
        finally:
            self.recovered.set()

    def _isolation(self) -> None:
        self.pushed.wait(timeout=600)
        stable = self.platform.serving(ISOLATED_SERVICE)
        rev = self.platform.deploy_revision(ISOLATED_SERVICE, error_pct=self.s.isolation_error_pct)
        stop = threading.Event()
        with self.act("isolate", service=ISOLATED_SERVICE, revision=rev,
                      errorPct=self.s.isolation_error_pct) as act:  # fmt: skip
            sender = threading.Thread(
                target=self._notify_load, args=(stop, self.s.isolation_rps), daemon=True
            )
            sender.start()
            deadline = time.time() + self.s.isolation_max_sec
            while time.time() < deadline:
                if (
                    self.recorder.rec.value_at(f"isolated.{ISOLATED_SERVICE}", time.time()) or 0
                ) > 0:
                    act.detail["isolatedSeen"] = True
                    break
                time.sleep(2)
            stop.set()
            sender.join(10)
        self.platform.serve_only(ISOLATED_SERVICE, stable)
        if self.s.wants(*ATTACK_CANARY_CLAIMS, *BUDGET_CLAIMS):
            self._recover(stable)
        self.recovered.set()
        if self.s.wants(*BUDGET_CLAIMS):
            Budgets(self.r).budgets()

    def _recover(self, stable: str) -> None:
        """The good revision under ``recovery_rps`` (over the guard's 20 requests a minute,
        so each minute is judged) until the circuit is closed again: open for 2 minutes,
        then half-open until 3 minutes under the error threshold."""
        stop = threading.Event()
        with self.act("recover", service=ISOLATED_SERVICE, revision=stable,
                      rps=self.s.recovery_rps) as act:  # fmt: skip
            sender = threading.Thread(
                target=self._notify_load, args=(stop, self.s.recovery_rps), daemon=True
            )
            sender.start()
            deadline = time.time() + self.s.recovery_max_sec
            act.detail["recovered"] = False
            while time.time() < deadline:
                state = self.recorder.rec.value_at(f"isolated.{ISOLATED_SERVICE}", time.time())
                if state == 0:
                    act.detail["recovered"] = True
                    break
                time.sleep(2)
            stop.set()
            sender.join(10)

    def _notify_load(self, stop: threading.Event, rps: float) -> None:
        url = self.h.sandbox_url.rstrip("/") + "/notification/send"
        i = 0
        while not stop.is_set():
            body = {"uid": f"u{i % 50}", "text": "hello", "loadRunId": f"{self.run_id}-iso"}
            post(url, body, {}, timeout=10)
            i += 1
            stop.wait(1.0 / rps)
