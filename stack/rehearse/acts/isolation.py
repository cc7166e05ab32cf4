"""The isolation track: a failing revision at 100 % until the guard isolates its service."""

from __future__ import annotations

import logging
import threading
import time

from stack.rehearse.acts.track import Track
from stack.rehearse.calls import post
from stack.rehearse.settings import (
    ISOLATED_SERVICE,
)

log = logging.getLogger("pack391.rehearse")


class Isolation(Track):
    """The ``isolate`` act."""

    def isolation(self) -> None:
        self.pushed.wait(timeout=600)
        stable = self.platform.serving(ISOLATED_SERVICE)
        rev = self.platform.deploy_revision(ISOLATED_SERVICE, error_pct=self.s.isolation_error_pct)
        stop = threading.Event()
        with self.act("isolate", service=ISOLATED_SERVICE, revision=rev,
                      errorPct=self.s.isolation_error_pct) as act:  # fmt: skip
            sender = threading.Thread(target=self._notify_load, args=(stop,), daemon=True)
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

    def _notify_load(self, stop: threading.Event) -> None:
        url = self.h.sandbox_url.rstrip("/") + "/notification/send"
        i = 0
        while not stop.is_set():
            body = {"uid": f"u{i % 50}", "text": "hello", "loadRunId": f"{self.run_id}-iso"}
            post(url, body, {}, timeout=10)
            i += 1
            stop.wait(1.0 / self.s.isolation_rps)
