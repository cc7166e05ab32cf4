"""A local stand-in for the Firestore Admin REST API (v1), for the real client library.

It speaks the API's REST shape for what the managed backup backend uses: export
(``:exportDocuments``), ``GET``/``DELETE`` of a database, ``databases:clone``, and
``GET``, list and ``:cancel`` of operations. Every request is recorded; a call fails
when a test says so (``errors``). ``on_clone``/``on_delete`` let a test give a clone
real documents (in the Firestore emulator) and remove them.

An export is asynchronous, as the real one is: ``exportDocuments`` "occurs in the
background and its progress can be monitored and managed via the Operation resource
that is created. The output of an export may only be used once the associated
operation is done"
(https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases/exportDocuments).
Its operation (https://cloud.google.com/firestore/docs/reference/rest/Shared.Types/Operation,
``projects.databases.operations.get`` / ``.list`` / ``.cancel``) answers ``done: false``
with ``metadata`` an ``ExportDocumentsMetadata`` in ``operationState: PROCESSING`` and
partial ``progressDocuments`` / ``progressBytes``
(https://cloud.google.com/firestore/docs/reference/rest/Shared.Types/ExportDocumentsMetadata)
until it has been read ``export_polls`` times; then ``done: true`` with either
``response`` (an ``ExportDocumentsResponse`` naming ``outputUriPrefix``) and
``operationState: SUCCESSFUL``, or ``error`` (a ``google.rpc.Status``) and
``operationState: FAILED`` (``export_fails``), and ``endTime``. A successful export
writes its files into the Cloud Storage fake (``storage``) in the layout of a real
export: ``<prefix>/<last segment>.overall_export_metadata`` and
``<prefix>/all_namespaces/all_kinds/`` (``all_namespaces_all_kinds.export_metadata``,
``output-0``). Clones finish at once unless a test holds them back (``clone_pending``).

Indexes belong to one database, as in the API: ``projects.databases.collectionGroups.indexes.list``
lists the composite indexes under ``parent`` "of the form
``projects/{projectId}/databases/{databaseId}/collectionGroups/{collectionId}``"
(https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases.collectionGroups.indexes/list;
``-`` as the collection id: every group, as the deploy guard asks). A database starts with
none (:meth:`FakeFirestoreAdmin.declare_indexes` deploys them). A clone takes its source's:
``databases:clone`` creates a database "with the database type, index configuration, and
documents from an existing database"
(https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases/clone); a
deleted database's indexes go with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import flask

from tests.fakes.serving import served

ADMIN = "type.googleapis.com/google.firestore.admin.v1."


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    """Exports fail when they finish (read when the operation completes)."""
    export_polls: int = 2
    """Reads (``operations.get``) of an export's operation before it is done: the first
    ``export_polls - 1`` answer ``done: false``. Never done on the first read unless 1."""
    storage: Any = None
    """The Cloud Storage fake (:class:`tests.fakes.cloud_storage.FakeCloudStorage`) a
    successful export writes its files into; None: no files."""
    clone_pending: bool = False
    """Clones never finish (the database exists, its operation stays ``done: false``)."""
    errors: dict[str, int] = field(default_factory=dict)
    """Call kind (``export``, ``get_operation``, ``list_operations``, ``get_database``,
    ``clone``, ``delete_database``, ``list_indexes``) -> HTTP status to answer with instead."""
    on_clone: Callable[[str], None] | None = None
    """Called with the new database id when a clone is created."""
    on_delete: Callable[[str], None] | None = None
    """Called with the database id when a database is deleted."""
    requests: list[Recorded] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    indexes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Database id -> its composite indexes (``Index`` resources, names in that database)."""
    exports_running: dict[str, int] = field(default_factory=dict)
    """Export operation name -> reads left before it is done."""
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

    def create_database(self, db: str) -> None:
        """A database created apart (``databases.create``), with no index: the logical
        backend's drill database."""
        self.databases.setdefault(db, self._database(db))

    def declare_indexes(
        self, db: str, specs: list[dict[str, Any]], state: str = "READY"
    ) -> list[dict[str, Any]]:
        """Deploy ``specs`` (``firestore.indexes.json`` entries) to database ``db`` as
        ``Index`` resources in ``state``, as ``firebase deploy --only firestore:indexes``
        would; the ``__name__`` field is appended as the API does."""
        made = []
        for spec in specs:
            group = spec["collectionGroup"]
            fields = [dict(f) for f in spec["fields"]]
            if fields[-1]["fieldPath"] != "__name__":
                fields.append(
                    {"fieldPath": "__name__", "order": fields[-1].get("order", "ASCENDING")}
                )
            made.append(
                {
                    "name": f"projects/{self.project}/databases/{db}/collectionGroups/{group}"
                    f"/indexes/{uuid.uuid4().hex[:12]}",
                    "queryScope": spec.get("queryScope", "COLLECTION"),
                    "fields": fields,
                    "state": state,
                }
            )
        self.indexes.setdefault(db, []).extend(made)
        return made

    def _list_indexes(self, db: str, group: str) -> dict[str, Any]:
        """``indexes.list`` of one database (one page): one collection group, or ``-``."""
        listed = [
            index
            for index in self.indexes.get(db, [])
            if group == "-" or f"/collectionGroups/{group}/" in index["name"]
        ]
        return {"indexes": listed}

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

    def _error(self, kind: str) -> tuple[Any, int] | None:
        status = self.errors.get(kind)
        if status is None:
            return None
        names = {
            403: "PERMISSION_DENIED",
            429: "RESOURCE_EXHAUSTED",
            500: "INTERNAL",
            503: "UNAVAILABLE",
            409: "ABORTED",
        }
        message = f"fake {kind} error"
        return {"error": {"code": status, "message": message, "status": names[status]}}, status

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[Any, int]:
        self.requests.append(Recorded(method, path, body))
        prefix = f"v1/projects/{self.project}/databases"
        if not path.startswith(prefix):
            return {"error": {"code": 404, "message": f"no {path}", "status": "NOT_FOUND"}}, 404
        rest = path[len(prefix) :]
        if method == "POST" and rest == ":clone":
            return self._error("clone") or (self._clone(body), 200)
        db, _, tail = rest.lstrip("/").partition("/")
        db, _, verb = db.partition(":")
        if method == "POST" and verb == "exportDocuments":
            return self._error("export") or (self._export(db, body), 200)
        if method == "GET" and tail == "operations":
            return self._error("list_operations") or (self._list(db), 200)
        if tail.startswith("operations/"):
            name, _, op_verb = path[len("v1/") :].partition(":")
            op = self.operations.get(name)
            if op is None:
                return {"error": {"code": 404, "status": "NOT_FOUND"}}, 404
            if method == "POST" and op_verb == "cancel":
                if not op["done"]:
                    self.exports_running.pop(name, None)
                    op.update(done=True, error={"code": 1, "message": "cancelled"})
                    if "operationState" in op["metadata"]:
                        op["metadata"]["operationState"] = "CANCELLED"
                return {}, 200
            if method == "GET":
                refused = self._error("get_operation")
                if refused is not None:
                    return refused
                self._advance(name)
                return op, 200
        refused = self._error("get_database") if method == "GET" and not tail else None
        if refused is not None:
            return refused
        if db not in self.databases:
            return {"error": {"code": 404, "message": db, "status": "NOT_FOUND"}}, 404
        if method == "GET" and not tail:
            return self.databases[db], 200
        group, _, leaf = tail.removeprefix("collectionGroups/").partition("/")
        if method == "GET" and tail.startswith("collectionGroups/") and leaf == "indexes":
            return self._error("list_indexes") or (self._list_indexes(db, group), 200)
        if method == "DELETE" and not tail:
            refused = self._error("delete_database")
            if refused is not None:
                return refused
            gone = self.databases.pop(db)
            self.indexes.pop(db, None)
            if self.on_delete is not None:
                self.on_delete(db)
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
            "startTime": _now(),
            "operationState": "PROCESSING",
            "progressDocuments": {
                "completedWork": "0",
                "estimatedWork": str(self.export_documents),
            },
            "progressBytes": {"completedWork": "0", "estimatedWork": str(self.export_bytes)},
            "outputUriPrefix": prefix,
            "snapshotTime": body.get("snapshotTime"),
        }
        op = self._operation(db, metadata, {})
        op.pop("response")
        op["done"] = False
        self.exports_running[op["name"]] = max(1, self.export_polls)
        return op

    def _advance(self, name: str) -> None:
        """One read of a running export: half-way on the way, finished on the last."""
        left = self.exports_running.get(name)
        if left is None:
            return
        op = self.operations[name]
        meta = op["metadata"]
        if left > 1:
            self.exports_running[name] = left - 1
            meta["progressDocuments"]["completedWork"] = str(self.export_documents // 2)
            meta["progressBytes"]["completedWork"] = str(self.export_bytes // 2)
            return
        del self.exports_running[name]
        meta["endTime"] = _now()
        op["done"] = True
        if self.export_fails:
            meta["operationState"] = "FAILED"
            op["error"] = {"code": 13, "message": "export failed in the fake"}
            return
        meta["operationState"] = "SUCCESSFUL"
        meta["progressDocuments"]["completedWork"] = str(self.export_documents)
        meta["progressBytes"]["completedWork"] = str(self.export_bytes)
        prefix = meta["outputUriPrefix"]
        op["response"] = {"@type": ADMIN + "ExportDocumentsResponse", "outputUriPrefix": prefix}
        if self.storage is not None:
            self._write_export_files(prefix)

    def _write_export_files(self, prefix: str) -> None:
        bucket, _, path = prefix[len("gs://") :].partition("/")
        path = path.strip("/")
        last = path.rsplit("/", 1)[-1] or bucket
        kinds = f"{path}/all_namespaces/all_kinds" if path else "all_namespaces/all_kinds"
        files = {
            f"{path}/{last}.overall_export_metadata"
            if path
            else f"{last}.overall_export_metadata": (f"export of {self.project}".encode()),
            f"{kinds}/all_namespaces_all_kinds.export_metadata": b"kinds metadata",
            f"{kinds}/output-0": b"\x00" * 64 + str(self.export_documents).encode(),
        }
        for name, data in files.items():
            self.storage.objects[(bucket, name)] = data

    def _list(self, db: str) -> dict[str, Any]:
        """``operations.list`` of a database (one page; reading does not advance them)."""
        own = f"projects/{self.project}/databases/{db}/operations/"
        return {"operations": [op for name, op in self.operations.items() if name.startswith(own)]}

    def _clone(self, body: dict[str, Any]) -> dict[str, Any]:
        target = body["databaseId"]
        self.databases[target] = self._database(target)
        source = str((body.get("pitrSnapshot") or {}).get("database", "")).rsplit("/", 1)[-1]
        own = f"projects/{self.project}/databases/"
        self.indexes[target] = [
            {**index, "name": index["name"].replace(own + source + "/", own + target + "/", 1)}
            for index in self.indexes.get(source, [])
        ]
        if self.on_clone is not None:
            self.on_clone(target)
        metadata = {
            "@type": ADMIN + "CloneDatabaseMetadata",
            "operationState": "SUCCESSFUL",
            "database": self.databases[target]["name"],
            "pitrSnapshot": body.get("pitrSnapshot"),
        }
        op = self._operation(
            target, metadata, {"@type": ADMIN + "Database", **self.databases[target]}
        )
        if self.clone_pending:
            op["done"] = False
            op.pop("response")
        return op


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
