"""What the fakes of Google's APIs share: which API method a request is, whether the caller
may make it, and a record of every method called in this process.

- :func:`rest_method` reads the method from a REST request's verb and path (the paths of
  Google's REST references; the routes below name each method's id in
  :data:`stack.release.permissions.METHODS`). A gRPC call names its method itself.
- :func:`refusal`: the permission check. Without an explicit grant, a fake allows what
  ``pack391 bootstrap`` grants the account that makes the call in production
  (:func:`stack.release.permissions.granted`); a call lacking a permission gets Google's 403
  ``PERMISSION_DENIED``.
- :data:`CALLED`: every method id (or unknown Google-looking request) this process sent to
  a fake; ``tests/plugins/api_calls.py`` checks them against bootstrap's roles.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from stack.release.permissions import BY_ID, Method, granted, missing

_P = r"projects/[^/]+"
_L = rf"{_P}/locations/[^/]+"
_DB = rf"{_P}/databases/[^/:]+"

REST_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (verb, re.compile(path), method)
    for verb, path, method in (
        # Cloud Run Admin API v2 (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services)
        ("GET", rf"/v2/{_L}/services/[^/:]+", "google.cloud.run.v2.Services/GetService"),
        ("PATCH", rf"/v2/{_L}/services/[^/:]+", "google.cloud.run.v2.Services/UpdateService"),
        # Cloud Functions v2 operations share this path; the bundle polls only Cloud Run's
        ("GET", rf"/v2/{_L}/operations/[^/:]+", "google.longrunning.Operations/GetOperation@run"),
        # Cloud Functions API v2: what firebase deploy sends
        ("PATCH", rf"/v2/{_L}/functions/[^/:]+",
         "google.cloud.functions.v2.FunctionService/UpdateFunction"),
        # Firestore Admin (https://cloud.google.com/firestore/docs/reference/rest)
        ("GET", rf"/v1/{_DB}/collectionGroups/[^/]+/indexes",
         "google.firestore.admin.v1.FirestoreAdmin/ListIndexes"),
        ("POST", rf"/v1/{_DB}:exportDocuments",
         "google.firestore.admin.v1.FirestoreAdmin/ExportDocuments"),
        ("POST", rf"/v1/{_P}/databases:clone",
         "google.firestore.admin.v1.FirestoreAdmin/CloneDatabase"),
        ("GET", rf"/v1/{_DB}", "google.firestore.admin.v1.FirestoreAdmin/GetDatabase"),
        ("DELETE", rf"/v1/{_DB}", "google.firestore.admin.v1.FirestoreAdmin/DeleteDatabase"),
        ("GET", rf"/v1/{_DB}/operations/[^/:]+",
         "google.longrunning.Operations/GetOperation@firestore"),
        ("GET", rf"/v1/{_DB}/operations",
         "google.longrunning.Operations/ListOperations@firestore"),
        ("POST", rf"/v1/{_DB}/operations/[^/:]+:cancel",
         "google.longrunning.Operations/CancelOperation@firestore"),
        # Firestore documents (REST)
        ("POST", rf"/v1/{_DB}/documents(/.*)?:runQuery", "google.firestore.v1.Firestore/RunQuery"),
        ("POST", rf"/v1/{_DB}/documents(/.*)?:listCollectionIds",
         "google.firestore.v1.Firestore/ListCollectionIds"),
        ("POST", rf"/v1/{_DB}/documents:commit", "google.firestore.v1.Firestore/Commit"),
        # Cloud Tasks v2; firebase-admin's emulator URL has no /v2
        ("POST", rf"(/v2)?/{_L}/queues/[^/]+/tasks", "google.cloud.tasks.v2.CloudTasks/CreateTask"),
        # Secret Manager v1
        ("GET", rf"/v1/{_P}/secrets/[^/]+/versions/[^/:]+",
         "google.cloud.secretmanager.v1.SecretManagerService/GetSecretVersion"),
        ("GET", rf"/v1/{_P}/secrets/[^/]+/versions/[^/:]+:access",
         "google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion"),
        ("GET", rf"/v1/{_P}/secrets/[^/:]+",
         "google.cloud.secretmanager.v1.SecretManagerService/GetSecret"),
        ("POST", rf"/v1/{_P}/secrets",
         "google.cloud.secretmanager.v1.SecretManagerService/CreateSecret"),
        ("POST", rf"/v1/{_P}/secrets/[^/:]+:addVersion",
         "google.cloud.secretmanager.v1.SecretManagerService/AddSecretVersion"),
        # IAM Service Account Credentials
        ("POST", r"/v1/projects/-/serviceAccounts/[^/:]+:signBlob",
         "google.iam.credentials.v1.IAMCredentials/SignBlob"),
        # Identity Toolkit (an API key, no IAM)
        ("POST", r"/v1/accounts:signInWithCustomToken",
         "identitytoolkit.accounts.signInWithCustomToken"),
        # Cloud Storage JSON API (https://cloud.google.com/storage/docs/json_api/v1/objects)
        ("POST", r"/upload/storage/v1/b/[^/]+/o", "storage.objects.insert"),
        ("GET", r"/download/storage/v1/b/[^/]+/o/.+", "storage.objects.get"),
        ("GET", r"/storage/v1/b/[^/]+", "storage.buckets.get"),
        ("GET", r"/storage/v1/b/[^/]+/o", "storage.objects.list"),
        ("GET", r"/storage/v1/b/[^/]+/o/.+", "storage.objects.get"),
        ("DELETE", r"/storage/v1/b/[^/]+/o/.+", "storage.objects.delete"),
        ("POST", r"/storage/v1/b/[^/]+/o/.+/rewriteTo/b/[^/]+/o/.+", "storage.objects.rewrite"),
    )
)  # fmt: skip
"""(HTTP verb, whole-path regex, method id), first match wins."""

_GOOGLE_LOOKING = re.compile(
    r"^/((upload/|download/)?storage/v1/|v\d+(alpha|beta)?\d*/|projects/[^/]+/locations/)"
)
"""A path shaped like a Google REST API's: a request with such a path that no route names is
an unknown Google method (the plugin fails the run), not a webhook or a probe."""


def rest_method(verb: str, path: str) -> str | None:
    """The method id of a REST request; ``UNKNOWN VERB path`` for a Google-looking path no
    route names; None for anything else (a webhook, a health probe)."""
    for route_verb, pattern, method in REST_ROUTES:
        if route_verb == verb.upper() and pattern.fullmatch(path):
            return method
    if _GOOGLE_LOOKING.match(path):
        return f"UNKNOWN {verb.upper()} {path}"
    return None


def grpc_method(full: str) -> str:
    """``/google.monitoring.v3.MetricService/ListTimeSeries`` -> the method id."""
    return full.lstrip("/")


_lock = threading.Lock()
CALLED: set[str] = set()
"""Every method id a fake received in this process (unknown ones as ``UNKNOWN ...``)."""


def record(method: str) -> None:
    with _lock:
        CALLED.add(method)


def called() -> list[str]:
    with _lock:
        return sorted(CALLED)


def refusal(method: str, permissions: Iterable[str] | None) -> str | None:
    """The permission the caller lacks for ``method`` (None: allowed, or not a method of
    the table). ``permissions`` None: what bootstrap grants the table's caller."""
    row: Method | None = BY_ID.get(method)
    if row is None:
        return None
    held = granted(row.principal) if permissions is None else frozenset(permissions)
    lacking = missing(row, held)
    return lacking[0] if lacking else None


def rest_denied(permission: str, resource: str) -> tuple[int, Any]:
    """Google's REST error for a missing permission (the ``google.rpc.Status`` JSON every
    Google REST API answers; Cloud Run's message wording)."""
    message = (
        f"Permission '{permission}' denied on resource '{resource}' (or resource may not exist)."
    )
    return 403, {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}


def resource_of(path: str) -> str:
    """The resource name a REST path addresses (``/v2/projects/p/...`` -> ``projects/p/...``)."""
    match = re.search(r"(projects/.*|b/.*)$", path)
    return (match.group(1) if match else path).split(":", 1)[0]
