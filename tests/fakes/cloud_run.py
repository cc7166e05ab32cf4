"""Cloud Run Admin API v2 (REST) on top of :class:`FakeHttpApi`: services that keep the
fields written to them, long-running operations that finish on their first poll.

Speaks the JSON the real API speaks (camelCase fields, ``google.longrunning.Operation``
with the service as its ``response``), so ``run_v2.ServicesClient(transport="rest")``
works against it unchanged. Reusable by any area that drives Cloud Run (scaling,
traffic splitting).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from tests.fakes.http_api import FakeHttpApi, Recorded

SERVICE = r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/services/[^/:]+)"
OPERATION = r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/operations/[^/:]+)"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"


def _camel(path: str) -> list[str]:
    return [re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part) for part in path.split(".")]


class FakeCloudRun:
    def __init__(self, api: FakeHttpApi) -> None:
        self.api = api
        self.services: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        api.on("GET", SERVICE, self._get_service)
        api.on("PATCH", SERVICE, self._patch_service)
        api.on("GET", OPERATION, self._get_operation)

    def add_service(self, name: str, **fields: Any) -> None:
        self.services[name] = {"name": name, "generation": "1", **fields}

    def _get_service(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        service = self.services.get(m["name"])
        if service is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        return 200, service

    def _patch_service(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        name = m["name"]
        service = self.services.get(name)
        if service is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
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
