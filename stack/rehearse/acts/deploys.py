"""The deploy track: pre-deploy gates, a bad canary rolled back, a good one promoted,
under chat load."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from stack.rehearse.acts.track import Track
from stack.rehearse.load import constant_plan
from stack.rehearse.settings import (
    CANARY_SERVICE,
)

log = logging.getLogger("pack391.rehearse")


class Deploys(Track):
    """``gates``, ``canary_bad``, ``canary_good``."""

    def deploys(self) -> None:
        s = self.stack
        chat_stop = threading.Event()
        chat = threading.Thread(target=self._chat_load, args=(chat_stop,), daemon=True)
        chat.start()
        try:
            stable = self.platform.serving(CANARY_SERVICE)
            bad_version, good_version = f"v{self.run_id}-bad", f"v{self.run_id}-good"
            with self.act("gates", versions=[good_version, bad_version]):
                unvalidated = s.call("pack391_startDeployment", {
                    "version": f"v{self.run_id}-unvalidated", "environment": "rehearsal-bad",
                    "strategy": "canary", "services": [CANARY_SERVICE],
                })  # fmt: skip
                report = s.must(
                    "pack391_preDeployValidator",
                    {"version": good_version, "environment": "rehearsal-good"},
                )
                s.must("pack391_preDeployValidator",
                       {"version": bad_version, "environment": "rehearsal-bad"})  # fmt: skip
            self.rec.docs["gates"] = {
                "report": {"reportId": report.get("reportId"), "passed": report.get("passed"),
                           "gates": [{"name": g.get("name"), "status": g.get("status")}
                                     for g in report.get("gates", [])]},
                "unvalidatedStart": {"status": unvalidated.status, "message": unvalidated.message},
            }  # fmt: skip
            # the pipeline's order: pin-traffic (the snapshot), firebase deploy (the new
            # revision at 100 %), start at once; the claim counts from the deploy
            bad_rev = self._land(stable, "bad", "rehearsal-bad", token_mismatch=True)
            with self.act("canary_bad", service=CANARY_SERVICE, revision=bad_rev, stable=stable):
                self._canary("bad", bad_version, "rehearsal-bad")
            self.platform.serve_only(CANARY_SERVICE, stable)
            good_rev = self._land(stable, "good", "rehearsal-good")
            with self.act("canary_good", service=CANARY_SERVICE, revision=good_rev):
                self._canary("good", good_version, "rehearsal-good")
        finally:
            chat_stop.set()
            self.canary_done.set()
            chat.join(120)

    def _land(self, stable: str, label: str, env: str, **faults: Any) -> str:
        """``pack391_pinTraffic`` then the deploy: the revision serves what the platform
        gives it (100 %), recorded on ``canary.<label>`` from that moment."""
        pinned = self.stack.must(
            "pack391_pinTraffic", {"environment": env, "services": [CANARY_SERVICE]}
        )
        if [p.get("revision") for p in pinned.get("pinned", [])] != [stable]:
            raise RuntimeError(f"pin-traffic pinned {pinned}, not {stable}")
        rev = self.platform.deploy_revision(CANARY_SERVICE, **faults)
        self.recorder.add(f"canary.{label}", time.time(), 100.0)
        return rev

    def _chat_load(self, stop: threading.Event) -> None:
        """chat_monetization in 30 s phases, each run to its end, until ``stop``."""
        while not stop.is_set():
            plan = constant_plan("chat_monetization", self.h.sandbox_url, self.s.chat_rps, 30)
            run = f"{self.run_id}-chat-{int(time.time())}"
            begin = self.pool.run("chat", run, plan, time.time() + 0.2)
            self.pool.wait(run, begin - time.time() + 60)

    def _canary(self, label: str, version: str, env: str) -> None:
        s = self.stack
        started = s.must("pack391_startDeployment", {
            "version": version, "environment": env, "strategy": "canary",
            "services": [CANARY_SERVICE], "bakeSec": self.s.bake_sec,
            "minRequestsPerStep": self.s.min_requests_per_step,
        })  # fmt: skip
        dep_id = str(started["deploymentId"])
        self.recorder.watch_deployment(label, dep_id)
        deadline = time.time() + self.s.canary_max_sec
        while time.time() < deadline:
            st = s.call("pack391_getDeploymentStatus", {"deploymentId": dep_id}, s.ops)
            phase = st.result.get("phase")
            if phase in ("succeeded", "rolled_back", "failed", "paused"):
                time.sleep(3 * 2)  # two more samples of the final split
                return
            time.sleep(3)
