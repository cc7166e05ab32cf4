"""Cloud Run Admin API v2 (REST) on top of :class:`FakeHttpApi`: services that keep the
fields written to them, long-running operations that finish on their first poll.

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
    def __init__(self, api: FakeHttpApi) -> None:
        self.api = api
        self.services: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.refused: list[Recorded] = []
        """Updates refused for a stale etag."""
        self._ids = itertools.count(1)
        self._holds: list[HeldPatch] = []
        self._mutex = threading.Lock()
        api.on("GET", SERVICE, self._get_service)
        api.on("PATCH", SERVICE, self._patch_service)
        api.on("GET", OPERATION, self._get_operation)

    def add_service(self, name: str, **fields: Any) -> None:
        self.services[name] = {"name": name, "generation": "1", "etag": "etag-1", **fields}

    def hold_next_patch(self) -> HeldPatch:
        """Hold the next update request until the test sets ``release``."""
        held = HeldPatch()
        with self._mutex:
            self._holds.append(held)
        return held

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
        service = self.services.get(m["name"])
        if service is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        return 200, service

    def _update(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        name = m["name"]
        with self._mutex:
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
        mask = ",".join(req.query.get("updateMask", [])).split(",")
        for path in filter(None, mask):
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
        if "traffic" in mask:
            self._route_traffic(service)
        service["generation"] = str(int(service["generation"]) + 1)
        service["etag"] = f"etag-{service['generation']}"
        location = name.split("/services/")[0]
        op_name = f"{location}/operations/op-{next(self._ids)}"
        self.operations[op_name] = {
            "name": op_name,
            "done": True,
            "response": {"@type": SERVICE_TYPE, **service},
        }
        return 200, {"name": op_name, "done": False}

    def _route_traffic(self, service: dict[str, Any]) -> None:
        """What serves once the update is done: revision targets as given, a LATEST target
        resolved to the latest ready revision (what Cloud Run reports in trafficStatuses)."""
        statuses = []
        for target in service.get("traffic", []):
            status = dict(target)
            if not status.get("revision"):
                status["revision"] = service.get("latestReadyRevision", "").rsplit("/", 1)[-1]
            statuses.append(status)
        service["trafficStatuses"] = statuses

    def _get_operation(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        operation = self.operations.get(m["name"])
        if operation is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        return 200, operation
