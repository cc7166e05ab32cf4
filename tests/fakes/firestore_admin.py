"""A local stand-in for the Firestore Admin REST API (v1), for the real client library.

It speaks the API's REST shape for what the managed backup backend uses: export
(``:exportDocuments``), ``GET``/``DELETE`` of a database, ``databases:clone`` and
``GET`` of an operation. Every request is recorded; operations finish at once
(``done: true``) with API-shaped metadata and responses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import flask

from tests.fakes.serving import served

ADMIN = "type.googleapis.com/google.firestore.admin.v1."


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any]


@dataclass
class FakeFirestoreAdmin:
    """State and recording of the fake; tests flip the flags."""

    project: str
    pitr_enabled: bool = True
    export_documents: int = 1234
    export_bytes: int = 56789
    export_fails: bool = False
    requests: list[Recorded] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self) -> None:
        self.databases["(default)"] = self._database("(default)")

    def _database(self, db: str) -> dict[str, Any]:
        return {
            "name": f"projects/{self.project}/databases/{db}",
            "uid": uuid.uuid4().hex,
            "locationId": "nam5",
            "type": "FIRESTORE_NATIVE",
            "pointInTimeRecoveryEnablement": (
                "POINT_IN_TIME_RECOVERY_ENABLED"
                if self.pitr_enabled
                else "POINT_IN_TIME_RECOVERY_DISABLED"
            ),
            "versionRetentionPeriod": "604800s" if self.pitr_enabled else "3600s",
            "earliestVersionTime": "2026-01-01T00:00:00Z",
        }

    def _operation(
        self, db: str, metadata: dict[str, Any], response: dict[str, Any] | None
    ) -> dict[str, Any]:
        name = f"projects/{self.project}/databases/{db}/operations/{uuid.uuid4().hex[:12]}"
        op: dict[str, Any] = {"name": name, "done": True, "metadata": metadata}
        if response is None:
            op["error"] = {"code": 13, "message": "export failed in the fake"}
        else:
            op["response"] = response
        self.operations[name] = op
        return op

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[Any, int]:
        self.requests.append(Recorded(method, path, body))
        prefix = f"v1/projects/{self.project}/databases"
        if not path.startswith(prefix):
            return {"error": {"code": 404, "message": f"no {path}", "status": "NOT_FOUND"}}, 404
        rest = path[len(prefix) :]
        if method == "POST" and rest == ":clone":
            return self._clone(body), 200
        db, _, tail = rest.lstrip("/").partition("/")
        db, _, verb = db.partition(":")
        if method == "POST" and verb == "exportDocuments":
            return self._export(db, body), 200
        if method == "GET" and tail.startswith("operations/"):
            op = self.operations.get(path[len("v1/") :])
            return (op, 200) if op else ({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
        if db not in self.databases:
            return {"error": {"code": 404, "message": db, "status": "NOT_FOUND"}}, 404
        if method == "GET" and not tail:
            return self.databases[db], 200
        if method == "DELETE" and not tail:
            gone = self.databases.pop(db)
            return self._operation(
                db,
                {"@type": ADMIN + "DeleteDatabaseMetadata"},
                {
                    "@type": ADMIN + "Database",
                    **gone,
                },
            ), 200
        return {"error": {"code": 400, "message": f"unsupported {method} {path}"}}, 400

    def _export(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        prefix = body.get("outputUriPrefix", "")
        metadata = {
            "@type": ADMIN + "ExportDocumentsMetadata",
            "operationState": "FAILED" if self.export_fails else "SUCCESSFUL",
            "progressDocuments": {
                "completedWork": str(self.export_documents),
                "estimatedWork": str(self.export_documents),
            },
            "progressBytes": {"completedWork": str(self.export_bytes)},
            "outputUriPrefix": prefix,
            "snapshotTime": body.get("snapshotTime"),
        }
        response = (
            None
            if self.export_fails
            else {"@type": ADMIN + "ExportDocumentsResponse", "outputUriPrefix": prefix}
        )
        return self._operation(db, metadata, response)

    def _clone(self, body: dict[str, Any]) -> dict[str, Any]:
        target = body["databaseId"]
        self.databases[target] = self._database(target)
        metadata = {
            "@type": ADMIN + "CloneDatabaseMetadata",
            "operationState": "SUCCESSFUL",
            "database": self.databases[target]["name"],
            "pitrSnapshot": body.get("pitrSnapshot"),
        }
        return self._operation(
            target, metadata, {"@type": ADMIN + "Database", **self.databases[target]}
        )


def serve(project: str) -> Iterator[FakeFirestoreAdmin]:
    """Run the fake on a free port in a thread for as long as the generator lives."""
    fake = FakeFirestoreAdmin(project)
    app = flask.Flask("fake-firestore-admin")

    @app.route("/<path:path>", methods=["GET", "POST", "DELETE", "PATCH"])
    def any_call(path: str) -> flask.Response:
        body = flask.request.get_json(silent=True) or {}
        payload, status = fake.handle(flask.request.method, path, body)
        return flask.make_response(flask.jsonify(payload), status)

    with served(app) as url:
        fake.url = url
        yield fake
