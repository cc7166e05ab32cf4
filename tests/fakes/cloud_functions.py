"""Cloud Functions API v2 (REST) on top of :class:`FakeHttpApi`: what ``firebase deploy``
does to a 2nd-gen function's Cloud Run service.

firebase-tools (15.34.2, ``src/gcp/cloudfunctionsv2.ts``) updates a function with
``PATCH v2/{name}?updateMask=...`` and never sets ``serviceConfig.allTrafficOnLatestRevision``.
The API: "On CreateFunction and UpdateFunction, when set to true, the revision being
deployed will serve 100% of traffic, ignoring any traffic split settings, if any"
(https://cloud.google.com/functions/docs/reference/rest/v2/projects.locations.functions#serviceconfig),
and true is what a request that leaves it out gets. So this fake, on an update:

- creates a new revision of the function's Cloud Run service (``{function id lower-cased,
  _ as -}``; "Each time you deploy or redeploy a function, a new revision of the
  underlying Cloud Run service is automatically created",
  https://cloud.google.com/functions/docs/configuring/traffic-splitting);
- unless the request sets ``allTrafficOnLatestRevision: false``, replaces the service's
  traffic with 100 % on LATEST (a pinned split does not survive the deploy);
- answers a long-running operation, done when first polled.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import requests

from shared.gcp.cloudrun import function_service_id
from tests.fakes.cloud_run import FakeCloudRun
from tests.fakes.http_api import FakeHttpApi, Recorded

FUNCTION = (
    r"/v2/(?P<name>projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
    r"/functions/(?P<id>[^/:]+))"
)
OPERATION = r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/operations/[^/:]+)"
LATEST = 1
"""``TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST`` as the client libraries' REST JSON carries it
(``enum-encoding=int``)."""


class FakeCloudFunctions:
    def __init__(self, api: FakeHttpApi, run: FakeCloudRun) -> None:
        self.api = api
        self.run = run
        self.operations: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        api.on("PATCH", FUNCTION, self._patch)
        api.on("GET", OPERATION, self._operation)

    def _patch(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        service = f"projects/{m['project']}/locations/{m['region']}/services/" + (
            function_service_id(m["id"])
        )
        if service not in self.run.services:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        config = (req.body or {}).get("serviceConfig") or {}
        all_latest = config.get("allTrafficOnLatestRevision", True) is not False
        build = next(self._ids)
        revision = self.run.deploy_template(
            service,
            f"gcf-artifacts/{m['id'].lower()}:build-{build}",
            traffic=[{"type": LATEST, "percent": 100}] if all_latest else None,
        )
        op = f"projects/{m['project']}/locations/{m['region']}/operations/deploy-{build}"
        self.operations[op] = {
            "name": op,
            "done": True,
            "response": {"name": m["name"], "serviceConfig": {"revision": revision}},
        }
        return 200, {"name": op, "done": False}

    def _operation(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        op = self.operations.get(m["name"])
        if op is None:
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        return 200, op


def firebase_deploy(api: FakeHttpApi, project: str, region: str, function_id: str) -> str:
    """The update ``firebase deploy --only functions:...`` sends for one function (its
    shape: the source and runtime settings, no ``allTrafficOnLatestRevision``), then the
    operation polled to the end. Answers the new revision."""
    name = f"projects/{project}/locations/{region}/functions/{function_id}"
    body = {
        "name": name,
        "buildConfig": {"runtime": "python311", "entryPoint": function_id},
        "serviceConfig": {"availableMemory": "256Mi", "timeoutSeconds": 60},
    }
    mask = "name,buildConfig.runtime,buildConfig.entryPoint,serviceConfig.availableMemory"
    answer = requests.patch(
        f"{api.url}/v2/{name}", params={"updateMask": mask}, json=body, timeout=10
    )
    answer.raise_for_status()
    op = requests.get(f"{api.url}/v2/{answer.json()['name']}", timeout=10).json()
    assert op["done"], op
    return str(op["response"]["serviceConfig"]["revision"])
