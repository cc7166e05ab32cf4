"""The recorder: samples the running stack every few seconds onto the rehearsal's one
time axis, and reads the evidence documents back at the end.

Every sample (``SAMPLE_EVERY_SEC``) reads, without calling any function (the recorder
must not add traffic the detector would count):

- the sandbox's ``/__health``: each service's applied instance count (``applied.*``, set
  by the scaling guard's resize hook) and slots in use (``util_pct.*``);
- the scaling registry (``pack391_scaling_services``): ``state.currentInstances``
  (``instances.*``) and the isolation state (``isolated.*``);
- each deployment the script started (``pack391_deployments/{id}``): ``appliedPercent``
  (``canary.<label>``);
- DDoS mode (the Redis flag the rate limiter reads) and the open alerts of
  ``pack391_alerts`` (``ddos.mode``, ``alerts.open``);
- the error budgets' deploy freeze as ``pack391_evaluateSlos`` last recorded it
  (``pack391_slo/current``: ``slo.deploy_freeze``).

:meth:`Recorder.collect` reads the documents the claims judge (scaling decisions and
alerts, deployments, DDoS detections, alerts, blocks, metric history points) written
since the rehearsal began, with their times as unix seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import requests

from shared.ratelimit import keys
from shared.redis import client_for_url
from stack.platform.handle import StackHandle
from stack.rehearse.recording import Recording

log = logging.getLogger("pack391.rehearse")

SAMPLE_EVERY_SEC = 2.0
"""How often the recorder samples the stack."""

DDOS_MODE_KEY = keys.DDOS_MODE
"""The Redis flag of DDoS mode."""

ISOLATION_LEVEL = {"none": 0.0, "half_open": 0.5, "open": 1.0}

FREEZE_LEVEL = {(True, True): 1.0, (True, False): 0.5, (False, False): 0.0, (False, True): 0.0}
"""``slo.deploy_freeze``: 1 enforced, 0.5 wanted but not enforced (lifted, or shadow)."""


def epoch(value: Any) -> float | None:
    """A Firestore timestamp (or ISO string, or number) as unix seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def firestore_client(handle: StackHandle) -> Any:
    """A Firestore client on the stack's emulator, leaving this process's own setting
    alone (the client reads the emulator host when it is built)."""
    from stack.platform import datastores

    return datastores.firestore_client(handle.firestore_host, handle.project)


class Recorder:
    def __init__(self, handle: StackHandle, rec: Recording) -> None:
        self.h = handle
        self.rec = rec
        self.db = firestore_client(handle)
        self.redis = client_for_url(handle.redis_url, timeout_ms=5000)
        self.deployments: dict[str, str] = {}
        """label -> deployment id, registered by the script."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._http = requests.Session()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def close(self) -> None:
        self.redis.close()
        self.db.close()
        self._http.close()

    def watch_deployment(self, label: str, deployment_id: str) -> None:
        with self._lock:
            self.deployments[label] = deployment_id

    def add(self, name: str, at: float, value: float) -> None:
        with self._lock:
            self.rec.add(name, at, value)

    # ------------------------------------------------------------ sampling

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sample_once()
            except Exception as exc:  # a missed sample is a gap, never the end of the run
                log.warning("recorder sample failed: %r", exc)
            self._stop.wait(max(0.0, SAMPLE_EVERY_SEC - (time.monotonic() - began)))

    def sample_once(self) -> None:
        from shared import collections as c

        at = time.time()
        with contextlib.suppress(requests.RequestException, ValueError):
            health = self._http.get(self.h.sandbox_url.rstrip("/") + "/__health", timeout=3).json()
            for sid, s in health.items():
                if not isinstance(s, dict) or "instances" not in s:
                    continue
                self.add(f"applied.{sid}", at, float(s["instances"]))
                limit = float(s["instances"]) * _per_instance()
                if limit:
                    self.add(
                        f"util_pct.{sid}", at, round(100.0 * float(s.get("inUse", 0)) / limit, 1)
                    )
        for snap in self.db.collection(c.SCALING_SERVICES).stream():
            doc = snap.to_dict() or {}
            state = doc.get("state") or {}
            if "currentInstances" in state:
                self.add(f"instances.{snap.id}", at, float(state["currentInstances"]))
            self.add(
                f"isolated.{snap.id}", at, ISOLATION_LEVEL.get(str(state.get("isolation")), 0.0)
            )
        with self._lock:
            watched = dict(self.deployments)
        for label, dep_id in watched.items():
            doc = self.db.collection(c.DEPLOYMENTS).document(dep_id).get().to_dict() or {}
            pct = doc.get("appliedPercent", doc.get("trafficPercent"))
            if pct is not None:
                self.add(f"canary.{label}", at, float(pct))
        self.add("ddos.mode", at, 1.0 if self.redis.exists(DDOS_MODE_KEY) else 0.0)
        slo = self.db.collection(c.SLO_STATE).document(c.SLO_STATE_DOC).get(field_paths=["actions"])
        freeze = ((slo.to_dict() or {}).get("actions") or {}).get("deploy_freeze") or {}
        self.add(
            "slo.deploy_freeze",
            at,
            FREEZE_LEVEL[(bool(freeze.get("wanted")), bool(freeze.get("enforced")))],
        )
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self.db.collection(c.ALERTS).where(filter=FieldFilter("status", "==", "open"))
        count = query.count().get()[0][0].value
        self.add("alerts.open", at, float(count))

    # ------------------------------------------------------------ evidence

    def _since(self, collection: str, field: str, since: float) -> list[tuple[str, dict[str, Any]]]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        cutoff = datetime.fromtimestamp(since, UTC)
        query = self.db.collection(collection).where(filter=FieldFilter(field, ">=", cutoff))
        return [(s.id, s.to_dict() or {}) for s in query.stream()]

    def collect(self) -> dict[str, Any]:
        """The documents the claims judge, written since the rehearsal began."""
        from shared import collections as c

        since = self.rec.started_at - 5
        docs: dict[str, Any] = {}
        docs["scalingDecisions"] = sorted(
            (
                {"id": i, "serviceId": d.get("serviceId"), "at": epoch(d.get("at")),
                 "action": d.get("action"), "currentInstances": d.get("currentInstances"),
                 "desiredInstances": d.get("desiredInstances"), "acted": d.get("acted"),
                 "reasons": d.get("reasons")}
                for i, d in self._since(c.SCALING_DECISIONS, "at", since)
                if d.get("action") not in ("none", "no_data")
            ),
            key=lambda d: d["at"] or 0,
        )  # fmt: skip
        docs["scalingAlerts"] = sorted(
            (
                {"id": i, "serviceId": d.get("serviceId"), "kind": d.get("kind"),
                 "at": epoch(d.get("at")), "errorRatePct": d.get("errorRatePct")}
                for i, d in self._since(c.SCALING_EVENTS, "at", since)
            ),
            key=lambda d: d["at"] or 0,
        )  # fmt: skip
        deployments: dict[str, Any] = {}
        for label, dep_id in self.deployments.items():
            d = self.db.collection(c.DEPLOYMENTS).document(dep_id).get().to_dict() or {}
            deployments[label] = {
                "deploymentId": dep_id,
                "phase": d.get("phase"),
                "reason": d.get("reason"),
                "startedAt": epoch(d.get("createdAt")),
                "history": [history_entry(h) for h in d.get("history", [])],
                "judged": [judged_minute(a) for a in d.get("analyses", [])],
                "analyses": d.get("analyses", [])[-5:],
            }  # fmt: skip
        docs["deployments"] = deployments
        docs["detections"] = sorted(
            (
                {"id": i, "kind": d.get("kind"), "severity": d.get("severity"),
                 "minute": epoch(d.get("minute")), "detectedAt": epoch(d.get("detectedAt")),
                 "mitigated": d.get("mitigated"),
                 "blockedSources": d.get("blockedSources", [])[:20],
                 "held": d.get("held", [])}
                for i, d in self._since(c.DDOS_DETECTIONS, "detectedAt", since)
            ),
            key=lambda d: d["detectedAt"] or 0,
        )  # fmt: skip
        docs["alerts"] = sorted(
            (
                {"id": i, "source": d.get("source"), "kind": d.get("kind"),
                 "severity": d.get("severity"), "status": d.get("status"),
                 "openedAt": epoch(d.get("openedAt")), "title": d.get("title")}
                for i, d in self._since(c.ALERTS, "openedAt", since)
            ),
            key=lambda d: d["openedAt"] or 0,
        )  # fmt: skip
        docs["history"] = {
            "minutes": [
                {"id": i, "at": epoch(d.get("at")), "expireAt": epoch(d.get("expireAt"))}
                for i, d in self._since(c.OPS_METRICS_HISTORY, "at", since)
            ]
        }
        return docs

    def blocks(self, subjects: set[str]) -> list[dict[str, Any]]:
        from shared import collections as c

        return [
            {"id": s.id, "scope": d.get("scope"), "subject": d.get("subject"),
             "kind": d.get("kind"), "blockedAt": epoch(d.get("blockedAt"))}
            for s in self.db.collection(c.BLOCKS).stream()
            if (d := s.to_dict() or {}).get("subject") in subjects
        ]  # fmt: skip


def history_entry(h: dict[str, Any]) -> dict[str, Any]:
    """A deployment's history event as the claims read it: with why it happened and the
    platform signals it names (a pause's, a resumption's or a rollback's)."""
    detail = h.get("detail") or {}
    signals = {str(p.get("kind")) for p in detail.get("platform") or [] if isinstance(p, dict)}
    signals |= {str(k) for k in detail.get("kinds") or []}
    return {
        "at": epoch(h.get("at")), "event": h.get("event"), "phase": h.get("phase"),
        "trafficPercent": h.get("trafficPercent"), "manual": bool(detail.get("manual")),
        "why": detail.get("why") or detail.get("reason"), "signals": sorted(signals),
    }  # fmt: skip


def judged_minute(a: dict[str, Any]) -> dict[str, Any]:
    """One analysis of a deployment: its window, verdict, the platform signals the judge
    saw in it (None: the fast judge, which reads none) and the checks not passed."""
    platform = a.get("platform")
    return {
        "windowStart": epoch(a.get("windowStart")),
        "verdict": a.get("verdict"),
        "step": a.get("step"),
        "signals": None if platform is None else sorted(
            {str(sig.get("kind")) for sig in platform.get("signals") or []}
        ),
        "checks": {
            str(c.get("metric")): {"verdict": c.get("verdict"), "canary": c.get("canary"),
                                   "stable": c.get("stable")}
            for c in a.get("checks") or [] if c.get("verdict") != "pass"
        },
        "requests": [(a.get("canary") or {}).get("requests"),
                     (a.get("stable") or {}).get("requests")],
    }  # fmt: skip


def _per_instance() -> float:
    from stack.constants import LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE

    return float(LOAD_SANDBOX_CONCURRENCY_PER_INSTANCE)
