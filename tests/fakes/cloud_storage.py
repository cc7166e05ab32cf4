"""A local stand-in for the Cloud Storage JSON API, for the real ``google-cloud-storage``.

Speaks what logical backups to ``gs://`` use: multipart upload, media download (with
the ``x-goog-hash`` MD5 the client checks), listing by prefix, and delete; and what the
managed backend's copies use: ``objects.rewrite``
(https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite), the server-side
copy between buckets. Objects live in memory; every request is recorded. ``fault`` lets
a test make the "API" refuse a request (a 403 on one object mid-read, say) with
Google's error shape.

A rewrite follows the API's contract: the response is a ``storage#rewriteResponse``
with ``totalBytesRewritten``, ``objectSize`` and ``done``; while not done it carries a
``rewriteToken`` the caller sends back to continue, and once done the destination
object's ``resource``. Google completes a rewrite in one call only when it can (same
location and storage class); across locations "the rewrite may require multiple calls":
``rewrite_bytes_per_call`` makes every call copy at most that many bytes, as Google's
own ``maxBytesRewrittenPerCall`` does. The destination is written only when done.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import flask

from tests.fakes.serving import served


@dataclass
class FakeCloudStorage:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    fault: Callable[[str, str], int | None] | None = None
    """``(method, path) -> HTTP status`` to answer with an error instead, or None."""
    rewrite_bytes_per_call: int | None = None
    """At most this many bytes copied per ``objects.rewrite`` call (None: all at once)."""
    rewrites: dict[str, int] = field(default_factory=dict)
    """Open rewrite token -> bytes rewritten so far."""
    delay_sec: float = 0.0
    """Every request is answered this much later (a stalled Cloud Storage)."""

    def resource(self, bucket: str, name: str) -> dict[str, str]:
        data = self.objects[(bucket, name)]
        return {
            "kind": "storage#object",
            "bucket": bucket,
            "name": name,
            "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "generation": "1",
            "metageneration": "1",
            "contentType": "application/octet-stream",
        }


def _not_found(name: str) -> flask.Response:
    body = {"error": {"code": 404, "message": f"No such object: {name}"}}
    return flask.make_response(flask.jsonify(body), 404)


def _multipart_payload(body: bytes, content_type: str) -> tuple[dict[str, object], bytes]:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    sections = [s for s in body.split(b"--" + boundary) if s.strip() not in (b"", b"--")]
    _, _, meta_body = sections[0].partition(b"\r\n\r\n")
    _, _, data = sections[1].partition(b"\r\n\r\n")
    return flask.json.loads(meta_body.strip()), data[: -len(b"\r\n")]


def serve() -> Iterator[FakeCloudStorage]:
    fake = FakeCloudStorage()
    app = flask.Flask("fake-cloud-storage")

    @app.before_request
    def record() -> flask.Response | None:
        fake.requests.append((flask.request.method, flask.request.path))
        if fake.delay_sec:
            time.sleep(fake.delay_sec)
        status = fake.fault(flask.request.method, flask.request.path) if fake.fault else None
        if status is None:
            return None
        reason = {403: "Forbidden", 500: "Internal Error", 503: "Backend Error"}.get(status, "")
        body = {
            "error": {
                "code": status,
                "message": f"{reason} (fake fault on {flask.request.path})",
                "errors": [{"reason": reason.lower().replace(" ", ""), "message": reason}],
            }
        }
        return flask.make_response(flask.jsonify(body), status)

    @app.post("/upload/storage/v1/b/<bucket>/o")
    def upload(bucket: str) -> flask.Response:
        kind = flask.request.args.get("uploadType")
        if kind != "multipart":
            return flask.make_response(flask.jsonify(error={"code": 400, "message": kind}), 400)
        meta, data = _multipart_payload(
            flask.request.get_data(), flask.request.headers["Content-Type"]
        )
        name = str(meta.get("name") or flask.request.args["name"])
        fake.objects[(bucket, name)] = data
        return flask.jsonify(fake.resource(bucket, name))

    @app.get("/download/storage/v1/b/<bucket>/o/<path:name>")
    def download(bucket: str, name: str) -> flask.Response:
        if (bucket, name) not in fake.objects:
            return _not_found(name)
        data = fake.objects[(bucket, name)]
        response = flask.make_response(data)
        response.headers["Content-Type"] = "application/octet-stream"
        response.headers["x-goog-hash"] = f"md5={fake.resource(bucket, name)['md5Hash']}"
        response.headers["x-goog-generation"] = "1"
        return response

    @app.get("/storage/v1/b/<bucket>/o")
    def listing(bucket: str) -> flask.Response:
        prefix = flask.request.args.get("prefix", "")
        items = [
            fake.resource(b, n)
            for (b, n) in sorted(fake.objects)
            if b == bucket and n.startswith(prefix)
        ]
        return flask.jsonify(kind="storage#objects", items=items)

    @app.post(
        "/storage/v1/b/<src_bucket>/o/<path:src_name>/rewriteTo/b/<dst_bucket>/o/<path:dst_name>"
    )
    def rewrite(src_bucket: str, src_name: str, dst_bucket: str, dst_name: str) -> flask.Response:
        if (src_bucket, src_name) not in fake.objects:
            return _not_found(src_name)
        data = fake.objects[(src_bucket, src_name)]
        token = flask.request.args.get("rewriteToken")
        done_bytes = fake.rewrites.pop(token, 0) if token else 0
        per_call = int(flask.request.args.get("maxBytesRewrittenPerCall") or 0) or (
            fake.rewrite_bytes_per_call
        )
        done_bytes = len(data) if per_call is None else min(len(data), done_bytes + per_call)
        body: dict[str, object] = {
            "kind": "storage#rewriteResponse",
            "totalBytesRewritten": str(done_bytes),
            "objectSize": str(len(data)),
            "done": done_bytes >= len(data),
        }
        if done_bytes < len(data):
            next_token = f"rw-{len(fake.requests)}-{done_bytes}"
            fake.rewrites[next_token] = done_bytes
            body["rewriteToken"] = next_token
        else:
            fake.objects[(dst_bucket, dst_name)] = data
            body["resource"] = fake.resource(dst_bucket, dst_name)
        return flask.jsonify(body)

    @app.delete("/storage/v1/b/<bucket>/o/<path:name>")
    def delete(bucket: str, name: str) -> flask.Response:
        if fake.objects.pop((bucket, name), None) is None:
            return _not_found(name)
        return flask.make_response("", 204)

    with served(app) as url:
        fake.url = url
        yield fake
