"""The deploy track: pre-deploy gates, a bad canary rolled back, a good one promoted,
then the same two while an attack is live, under chat load."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from shared import thresholds as t
from stack.rehearse.acts.track import Track
from stack.rehearse.load import constant_plan
from stack.rehearse.settings import (
    ATTACK_CANARY_CLAIMS,
    CANARY_SERVICE,
    DEPLOY_CLAIMS,
)

log = logging.getLogger("pack391.rehearse")


class Deploys(Track):
    """``gates``, ``canary_bad``, ``canary_good``; then ``canary_attack_bad`` and
    ``canary_attack_good`` once the attacks have begun."""

    def deploys(self) -> None:
        chat_stop = threading.Event()
        chat = threading.Thread(target=self._chat_load, args=(chat_stop,), daemon=True)
        chat.start()
        try:
            try:
                if self.s.wants(*DEPLOY_CLAIMS):
                    self._canaries()
            finally:
                self.canary_done.set()
            if self.s.wants(*ATTACK_CANARY_CLAIMS):
                self._attack_canaries()
        finally:
            chat_stop.set()
            chat.join(120)

    def _canaries(self) -> None:
        s = self.stack
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

    def _attack_canaries(self) -> None:
        """The bad revision, then the clean one, each validated for chat-service and
        canaried in an environment of its own while the attacks are live (from the first
        flood: the bad one is rolled back within it, the clean one's steps span the
        detections and the distributed attack)."""
        self.attacks_started.wait(timeout=1200)
        for label, faults in (("attack_bad", {"token_mismatch": True}), ("attack_good", {})):
            stable = self.platform.serving(CANARY_SERVICE)
            version = f"v{self.run_id}-{label.replace('_', '-')}"
            env = f"rehearsal-{label.replace('_', '-')}"
            ddos = self.rec.value_at("ddos.mode", time.time())
            with self.act(f"canary_{label}", service=CANARY_SERVICE, stable=stable,
                          ddosModeAtStart=bool(ddos)) as act:  # fmt: skip
                report = self.stack.must("pack391_preDeployValidator", {
                    "version": version, "environment": env, "services": [CANARY_SERVICE],
                })  # fmt: skip
                act.detail["validation"] = {
                    "reportId": report.get("reportId"), "passed": report.get("passed"),
                    "failed": [g.get("name") for g in report.get("gates", [])
                               if g.get("status") == "fail"],
                }  # fmt: skip
                if not report.get("passed"):
                    log.warning("%s not started: the gates refused it: %s", label, report)
                    continue
                act.detail["revision"] = self._land(stable, label, env, **faults)
                self._canary(label, version, env)
            if faults:
                self.platform.serve_only(CANARY_SERVICE, stable)  # as after canary_bad

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
        longest = deadline + t.DDOS_MODE_DURATION_SEC  # a hold lasts as long as DDoS mode
        while time.time() < deadline:
            st = s.call("pack391_getDeploymentStatus", {"deploymentId": dep_id}, s.ops)
            phase = st.result.get("phase")
            # a pause the platform explains resumes by itself: keep waiting through it
            # (and past the watch's end: it is paused time, not the canary's); a human's
            # pause (too many inconclusive checks) waits for a human: stop there
            held = phase == "paused" and st.result.get("platformHold") is not None
            if held:
                deadline = min(longest, max(deadline, time.time() + 60))
            if phase in ("succeeded", "rolled_back", "failed") or (phase == "paused" and not held):
                time.sleep(3 * 2)  # two more samples of the final split
                return
            time.sleep(3)
