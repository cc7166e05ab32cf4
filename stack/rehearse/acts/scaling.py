"""The scaling track: hold, push past the target, drop (see :mod:`stack.rehearse.script`)."""

from __future__ import annotations

import logging
import time

from stack.rehearse.acts.track import Track
from stack.rehearse.load import constant_plan
from stack.rehearse.settings import (
    SCALED_SCENARIO,
    SCALED_SERVICE,
)

log = logging.getLogger("pack391.rehearse")


class Scaling(Track):
    """``hold``, ``push`` and ``drop`` on the scaled service."""

    def scaling(self) -> None:
        s = self.s
        self.slow_rev = self.platform.deploy_revision(
            SCALED_SERVICE, latency_ms=s.service_latency_ms
        )
        with self.act("hold", service=SCALED_SERVICE, rps=s.hold_rps, revision=self.slow_rev):
            # the hold ends (and the push begins) at second push_second of a minute, or
            # within push_window_sec after it
            second = (time.time() + 1 + s.hold_sec) % 60
            late = second - s.push_second
            hold_sec = s.hold_sec + (0.0 if 0 <= late <= s.push_window_sec else (-late) % 60)
            self._phase("hold", s.hold_rps, hold_sec)
        with self.act("push", service=SCALED_SERVICE, rps=s.push_rps):
            push_sec = s.push_sec
            if s.push_past_minute_sec is not None:
                push_sec = 60.0 - time.time() % 60 + s.push_past_minute_sec
            self._phase("push", s.push_rps, push_sec)
        self.pushed.set()
        if not s.wants("scale_down", "no_degradation"):
            return
        with self.act("drop", service=SCALED_SERVICE, rps=s.drop_rps) as act:
            before = self.rec.value_at(f"applied.{SCALED_SERVICE}", time.time())
            deadline = time.time() + (s.scale_down_wait_sec if s.wants("scale_down") else 60.0)
            after_down = None
            while time.time() < deadline and (after_down is None or time.time() < after_down):
                self._phase(f"drop-{int(time.time())}", s.drop_rps, 30)
                now = self.rec.value_at(f"applied.{SCALED_SERVICE}", time.time())
                if after_down is None and before and now and now < before:
                    after_down = time.time() + 30  # the window after the scale-down
            act.detail["scaledDown"] = after_down is not None

    def _phase(self, name: str, rps: float, seconds: float) -> None:
        """``rps`` of the scaled service's scenario for ``seconds``, run to its end (never
        aborted: an abort cancels requests in flight, which the sandbox counts as 5xx)."""
        plan = constant_plan(SCALED_SCENARIO, self.h.sandbox_url, rps, max(1, round(seconds)))
        run = f"{self.run_id}-{name}"
        begin = self.pool.run("load", run, plan, time.time() + 0.2)
        self.pool.wait(run, begin - time.time() + seconds + 30)
