"""Cloud Run Admin API v2 (REST) on top of :class:`FakeHttpApi`: services that keep the
fields written to them, revisions created by template changes, traffic that follows the
API's rules, and long-running operations that finish after a while.

What it follows (each with a test in ``tests/deploy_guard/test_fakes_follow_the_api.py``):

- ``UpdateService`` answers a ``google.longrunning.Operation`` that is not done; the
  service's *status* (``latestReadyRevision``, ``trafficStatuses``) changes only when the
  operation completes (``op_seconds`` after the request; 0: at the first poll), while its
  *spec* (``template``, ``traffic``) is what was written
  (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services/patch,
  "Returns: Operation").
- A change to ``template`` creates a new revision ("Each deployment creates a new
  revision", https://cloud.google.com/run/docs/managing/revisions); its name is
  ``template.revision`` when given, else ``{service}-{NNNNN}-{xyz}``. A change to
  ``traffic`` or service-level ``scaling`` alone creates none.
- A traffic target of type ``LATEST`` serves the latest ready revision, so a new revision
  takes its share; revision targets keep theirs ("If you split traffic between multiple
  revisions or assigned traffic to a previous revision, all subsequent deployments use
  that traffic split pattern", https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration).
  ``gcloud run deploy --no-traffic`` is the same update with the traffic written as
  explicit revision targets (:meth:`CloudRunServices.deploy_image` does that).

Every service has an ``etag`` that changes with each update; an update carrying an older
``etag`` is refused with 409 ``ABORTED`` (optimistic concurrency), one without is taken.
:meth:`FakeCloudRun.hold_next_patch` holds the next update before the fake looks at it,
until the test releases it: a request that reaches Cloud Run late, deterministically.

Speaks the JSON the real API speaks (camelCase fields, ``google.longrunning.Operation``
with the service as its ``response``), so ``run_v2.ServicesClient(transport="rest")``
works against it unchanged. Reusable by any area that drives Cloud Run (scaling,
traffic splitting).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_api import FakeHttpApi, Recorded

SERVICE = r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/services/[^/:]+)"
OPERATION = r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/operations/[^/:]+)"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"


def _camel(path: str) -> list[str]:
    return [re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part) for part in path.split(".")]


@dataclass
class HeldPatch:
    """An update the fake holds: ``arrived`` is set when it reaches the fake, which then
    waits for ``release`` before applying (or refusing) it."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    request: Recorded | None = None
    status: int | None = None
    """The answer the fake gave once released."""
    answered: threading.Event = field(default_factory=threading.Event)


class FakeCloudRun:
    def __init__(self, api: FakeHttpApi, op_seconds: float = 0.0) -> None:
        self.api = api
        self.op_seconds = op_seconds
        """How long an update's operation runs before it is done (0: done when first polled)."""
        self.services: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, list[str]] = {}
        """Service name -> its revisions' short names, oldest first."""
        self.operations: dict[str, dict[str, Any]] = {}
        self.refused: list[Recorded] = []
        """Updates refused for a stale etag."""
        self._ids = itertools.count(1)
        self._holds: list[HeldPatch] = []
        self._pending: dict[str, tuple[float, str, str | None]] = {}
        """Operation -> (done at, service, the revision it makes ready)."""
        self._mutex = threading.RLock()
        api.on("GET", SERVICE, self._get_service)
        api.on("PATCH", SERVICE, self._patch_service)
        api.on("GET", OPERATION, self._get_operation)

    def add_service(self, name: str, **fields: Any) -> None:
        service = {"name": name, "generation": "1", "etag": "etag-1", **fields}
        latest = short(service.get("latestReadyRevision", ""))
        with self._mutex:
            self.services[name] = service
            self.revisions[name] = [latest] if latest else []
            if "trafficStatuses" not in service and "traffic" in service:
                self._route_traffic(service)

    def hold_next_patch(self) -> HeldPatch:
        """Hold the next update request until the test sets ``release``."""
        held = HeldPatch()
        with self._mutex:
            self._holds.append(held)
        return held

    def serving(self, name: str) -> dict[str, int]:
        """Revision -> percent as ``trafficStatuses`` says (what the test asserts on)."""
        with self._mutex:
            self._settle()
            shares: dict[str, int] = {}
            for status in self.services[name].get("trafficStatuses", []):
                if status.get("percent"):
                    rev = status["revision"]
                    shares[rev] = shares.get(rev, 0) + int(status["percent"])
            return shares

    def deploy_template(
        self, name: str, image: str, traffic: list[dict[str, Any]] | None = None
    ) -> str:
        """What another client's deploy does (e.g. the Cloud Functions API under
        ``firebase deploy``): a new template, optionally a new ``traffic``; answers the new
        revision (ready at once)."""
        with self._mutex:
            service = self.services[name]
            service["template"] = {"containers": [{"image": image}]}
            if traffic is not None:
                service["traffic"] = traffic
            revision = self._new_revision(name, None)
            self._bump(service)
            service["latestReadyRevision"] = f"{name}/revisions/{revision}"
            self._route_traffic(service)
            return revision

    def _new_revision(self, name: str, wanted: str | None) -> str:
        revisions = self.revisions.setdefault(name, [])
        service_id = name.rsplit("/", 1)[-1]
        revision = wanted or f"{service_id}-{len(revisions) + 1:05d}-{_suffix(len(revisions))}"
        revisions.append(revision)
        service = self.services[name]
        service["latestCreatedRevision"] = f"{name}/revisions/{revision}"
        return revision

    def _patch_service(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._mutex:
            held = self._holds.pop(0) if self._holds else None
        if held is None:
            return self._update(req, m)
        held.request = req
        held.arrived.set()
        held.release.wait(timeout=60)
        status, body = self._update(req, m)
        held.status = status
        held.answered.set()
        return status, body

    def _get_service(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._mutex:
            self._settle()
            service = self.services.get(m["name"])
            if service is None:
                return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            return 200, dict(service)

    def _update(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        name = m["name"]
        with self._mutex:
            self._settle()
            return self._update_locked(req, name)

    def _update_locked(self, req: Recorded, name: str) -> tuple[int, Any]:
        service = self.services.get(name)
        if service is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        sent = req.body.get("etag") if isinstance(req.body, dict) else None
        if sent and sent != service.get("etag"):
            self.refused.append(req)
            message = f"etag {sent} does not match {service.get('etag')}: the service changed"
            return 409, {"error": {"code": 409, "message": message, "status": "ABORTED"}}
        mask = [p for p in ",".join(req.query.get("updateMask", [])).split(",") if p]
        for path in mask:
            keys = _camel(path)
            source: Any = req.body
            for key in keys:
                source = source.get(key) if isinstance(source, dict) else None
            target = service
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            if source is None:
                target.pop(keys[-1], None)
            else:
                target[keys[-1]] = source
        ready: str | None = None
        if any(p == "template" or p.startswith("template.") for p in mask):
            wanted = (req.body.get("template") or {}).get("revision") or None
            ready = self._new_revision(name, wanted)
        self._bump(service)
        location = name.split("/services/")[0]
        op_name = f"{location}/operations/op-{next(self._ids)}"
        self.operations[op_name] = {"name": op_name, "done": False}
        self._pending[op_name] = (time.monotonic() + self.op_seconds, name, ready)
        return 200, {"name": op_name, "done": False}

    @staticmethod
    def _bump(service: dict[str, Any]) -> None:
        service["generation"] = str(int(service["generation"]) + 1)
        service["etag"] = f"etag-{service['generation']}"

    def _settle(self) -> None:
        """Complete the operations whose time has come: the new revision becomes the
        latest ready one and the traffic spec is resolved into ``trafficStatuses``."""
        now = time.monotonic()
        for op_name, (done_at, name, ready) in sorted(self._pending.items()):
            if done_at > now:
                continue
            del self._pending[op_name]
            service = self.services[name]
            if ready is not None:
                service["latestReadyRevision"] = f"{name}/revisions/{ready}"
            if "traffic" in service:
                self._route_traffic(service)
            self.operations[op_name] = {
                "name": op_name,
                "done": True,
                "response": {"@type": SERVICE_TYPE, **service},
            }

    def _route_traffic(self, service: dict[str, Any]) -> None:
        """What serves once the update is done: revision targets as given, a LATEST target
        resolved to the latest ready revision (what Cloud Run reports in trafficStatuses)."""
        statuses = []
        for target in service.get("traffic", []):
            status = dict(target)
            if not status.get("revision"):
                status["revision"] = short(service.get("latestReadyRevision", ""))
            statuses.append(status)
        service["trafficStatuses"] = statuses

    def _get_operation(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._mutex:
            self._settle()
            operation = self.operations.get(m["name"])
            if operation is None:
                return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            return 200, operation


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _suffix(n: int) -> str:
    """Cloud Run's three-letter revision suffix (random there, deterministic here)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(letters[(n * 7 + k * 11) % 26] for k in range(3))
