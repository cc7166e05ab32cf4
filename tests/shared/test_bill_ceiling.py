"""A ceiling on the bill at the edge, through real callables: App Check
on the user callables (a param read per request), ``direct`` and a secret-less
``cloudflare`` refused on a deployed instance, and the 1 MiB body limit enforced while a
chunked body streams in (real HTTP: the local functions server, and functions-framework's
gunicorn, what a deployed function runs). The Firestore emulator and a real redis-server
behind them."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from werkzeug.serving import make_server

from shared.auth import Role
from shared.edge import BODY_READ_CHUNK, MAX_BODY_BYTES, edge_spec_of
from shared.ratelimit import middleware as ratelimit_middleware
from stack.platform.procs import free_port
from stack.platform.tokens import emulator_id_token
from tests.conftest import ROOT, Backends, Caller, CallResult

CHECK = "pack391_checkRateLimit"
STATS = "pack391_getDDoSStats"
SWIPE = {"endpointClass": "swipe"}


def post(
    caller: Caller, name: str, data: Any, token: str | None, headers: dict[str, str] | None = None
) -> CallResult:
    """A callable request through the local server's app: POST {"data": ...}."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    response = caller.app.test_client().post(caller.url(name), json={"data": data}, headers=sent)
    return CallResult(response.status_code, response.get_json())


# ------------------------------------------------------------------ App Check


def user_callables(functions: dict[str, Any]) -> list[str]:
    specs = {name: edge_spec_of(fn) for name, fn in functions.items()}
    return sorted(name for name, spec in specs.items() if spec and spec.role is Role.USER)


def test_app_check_is_enforced_on_the_user_callables_when_the_param_says_so(
    caller: Caller, functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = caller.token("user", "app-user")
    ops = caller.token("ops", "app-ops")
    assert post(caller, CHECK, SWIPE, user).status == 200  # off by default

    monkeypatch.setenv("PACK391_ENFORCE_APP_CHECK", "true")
    names = user_callables(functions)
    assert {CHECK, "pack391_panicEscalation", "pack391_walletBruteForceShield"} <= set(names)
    for name in names:  # refused by the SDK itself, before any handler or limit runs
        missing = post(caller, name, {}, user)
        assert (missing.status, missing.error["status"]) == (401, "UNAUTHENTICATED"), name
    bad = post(caller, CHECK, SWIPE, user, {"X-Firebase-AppCheck": "not.a.token"})
    assert (bad.status, bad.error["status"]) == (401, "UNAUTHENTICATED")
    # ops and admin callables are not the app's: unaffected
    assert post(caller, STATS, {}, ops).status == 200
    # nor is an app backend (a service principal has no App Check token) ...
    service = caller.token("service", "svc-backend", service=True)
    assert post(caller, CHECK, SWIPE, service).status == 200
    # ... and a token that only claims to be one (here: minted for another project) meets
    # the SDK's own token check there
    forged = emulator_id_token("another-project", "svc-forged", {"service": True})
    refused = post(caller, CHECK, SWIPE, forged)
    assert (refused.status, refused.error["status"]) == (401, "UNAUTHENTICATED")

    # a token App Check verifies goes through (Google's signature check stood in for: the
    # emulators have no App Check, and its keys are fetched from Google)
    from firebase_admin import app_check

    def verify(token: str, app: Any = None) -> dict[str, Any]:
        if token != "verified-app-token":
            raise ValueError("invalid App Check token")
        return {"sub": "1:1234:android:abcd", "aud": ["projects/1234"]}

    monkeypatch.setattr(app_check, "verify_token", verify)
    allowed = post(caller, CHECK, SWIPE, user, {"X-Firebase-AppCheck": "verified-app-token"})
    assert allowed.status == 200 and allowed.result["allowed"] is True

    monkeypatch.setenv("PACK391_ENFORCE_APP_CHECK", "false")  # read per request
    assert post(caller, CHECK, SWIPE, user).status == 200


# ------------------------------------------------------------------ deployed front doors


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make this process look like a deployed function (``K_SERVICE``, no emulator) from
    the next instance on: the front door's configuration is built once per instance."""

    def become() -> None:
        monkeypatch.setenv("K_SERVICE", "pack391-checkratelimit")
        monkeypatch.delenv("FUNCTIONS_EMULATOR", raising=False)
        monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
        ratelimit_middleware.reset()  # a new instance

    return become


def test_direct_is_refused_on_a_deployed_instance(
    caller: Caller, deployed: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_FRONT_DOOR", "direct")
    monkeypatch.setenv("K_SERVICE", "pack391-checkratelimit")
    # the Firebase CLI's emulator sets K_SERVICE too: direct is what it needs
    assert post(caller, CHECK, SWIPE, caller.token("user")).status == 200
    deployed()
    for name, role, data in ((CHECK, "user", SWIPE), (STATS, "ops", {})):
        for attempt in range(2):  # every call, not only the first
            refused = post(caller, name, data, caller.token(role))
            assert (refused.status, refused.error["status"]) == (400, "FAILED_PRECONDITION")
            assert "PACK391_FRONT_DOOR: direct" in refused.error["message"], attempt


def test_cloudflare_without_its_origin_secret_is_refused_on_a_deployed_instance(
    caller: Caller, deployed: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_FRONT_DOOR", "cloudflare")
    monkeypatch.delenv("PACK391_CLOUDFLARE_ORIGIN_SECRET", raising=False)
    assert post(caller, CHECK, SWIPE, caller.token("user")).status == 200  # locally: allowed
    deployed()
    refused = post(caller, CHECK, SWIPE, caller.token("user"))
    assert (refused.status, refused.error["status"]) == (400, "FAILED_PRECONDITION")
    assert "PACK391_CLOUDFLARE_ORIGIN_SECRET: not set" in refused.error["message"]
    monkeypatch.setenv("PACK391_CLOUDFLARE_ORIGIN_SECRET", "too-short")
    ratelimit_middleware.reset()
    short = post(caller, STATS, {}, caller.token("ops"))
    assert (short.status, short.error["status"]) == (400, "FAILED_PRECONDITION")
    assert "PACK391_CLOUDFLARE_ORIGIN_SECRET: shorter than 16" in short.error["message"]


# ------------------------------------------------------------------ the body limit


class CountedInput:
    """The request body stream the application reads (the server's, dechunked), counted:
    the test's window into how much of a body the function read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.inner.read(size)
        self.read_bytes += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self.inner.readline(size)
        self.read_bytes += len(data)
        return data


@pytest.fixture
def counted_server(app: flask.Flask) -> Iterator[tuple[str, list[int]]]:
    """The local functions server over real HTTP (werkzeug's, which dechunks request
    bodies as gunicorn does), recording how many body bytes each request's function read
    by the time it answered."""
    reads: list[int] = []

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        stream = CountedInput(environ["wsgi.input"])
        environ["wsgi.input"] = stream
        answer = app(environ, start_response)  # the function has run and answered here
        reads.append(stream.read_bytes)
        return answer

    port = free_port()
    server = make_server("127.0.0.1", port, counted, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}", reads
    finally:
        server.shutdown()
        server.server_close()


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stalled_chunked_post(
    address: str,
    path: str,
    token: str,
    send_bytes: int,
    timeout: float = 20.0,
    *,
    content_type: str = "application/json",
    declared_length: int | None = None,
) -> tuple[int, dict[str, Any], int]:
    """POST a chunked body that never ends: ``send_bytes`` of a JSON string, then the
    connection is held open without the last chunk (with ``declared_length``: a plain
    body of that ``Content-Length``, stalled the same way). (status, body, bytes sent) of
    the answer; a server that reads the body whole before answering never answers (the
    read times out after ``timeout``)."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    hold = threading.Event()
    sent = [0]
    chunked = declared_length is None
    frame = _frame if chunked else bytes
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared_length}"

    def send() -> None:
        try:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n"
                f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n"
            )
            sock.sendall(head.encode() + frame(b'{"data": "'))
            while sent[0] < send_bytes and not hold.is_set():
                sock.sendall(frame(b"x" * BODY_READ_CHUNK))
                sent[0] += BODY_READ_CHUNK
            hold.wait(timeout)  # the body never ends
        except OSError:
            pass  # the server closed the connection after answering

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
        return response.status, body, sent[0]
    finally:
        hold.set()
        sock.close()
        sender.join(5)


def chunked_post(address: str, path: str, token: str, parts: list[bytes]) -> tuple[int, Any]:
    """POST ``parts`` as a chunked body (http.client with a generator: no Content-Length)."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=iter(parts),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                "Transfer-Encoding": "chunked",
            },
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_chunked_body_is_refused_once_past_the_limit_not_read_whole(
    caller: Caller, counted_server: tuple[str, list[int]]
) -> None:
    address, reads = counted_server
    path = caller.url(CHECK)
    token = caller.token("user", "chunky")
    started = time.monotonic()
    status, body, sent = stalled_chunked_post(address, path, token, MAX_BODY_BYTES + (256 << 10))
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert f"larger than {MAX_BODY_BYTES} bytes" in body["error"]["message"]
    assert time.monotonic() - started < 10  # answered while the body was still coming
    assert reads == [MAX_BODY_BYTES + 1]  # read up to one byte past the limit, no more
    assert sent <= MAX_BODY_BYTES + (256 << 10)

    # at the limit exactly: read whole and judged (a field the model does not know)
    filler = MAX_BODY_BYTES - len(b'{"data": {"endpointClass": "swipe", "pad": ""}}')
    exact = [b'{"data": {"endpointClass": "swipe", "pad": "', b"p" * filler, b'"}}']
    status, answer = chunked_post(address, path, token, exact)
    assert (status, answer["error"]["details"]["field"]) == (400, "pad")
    assert reads[-1] == MAX_BODY_BYTES
    # one byte more is too large
    status, answer = chunked_post(address, path, token, [*exact[:2], b"p", exact[2]])
    assert status == 400 and "larger than" in answer["error"]["message"]
    assert reads[-1] == MAX_BODY_BYTES + 1

    # a small chunked body reaches the SDK as the cached body: the call works
    parts = [b'{"da', b'ta": {"endpoint', b'Class": "swipe"}}']
    status, answer = chunked_post(address, path, token, parts)
    assert status == 200 and answer["result"]["allowed"] is True
    assert reads[-1] == sum(len(p) for p in parts)


@pytest.fixture
def framework_server(backends: Backends) -> Iterator[str]:
    """``functions-framework --target pack391_checkRateLimit``: gunicorn, the server a
    deployed Python function runs (Cloud Functions 2nd gen), in front of this session's
    emulator and redis-server."""
    port = free_port()
    binary = Path(sys.executable).with_name("functions-framework")
    assert binary.exists(), "functions-framework is not installed in the venv (make setup)"
    env = {**os.environ, "FUNCTION_TARGET": CHECK, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(binary), "--target", CHECK, "--source", "main.py", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        pytest.fail(f"functions-framework did not start:\n{log.read().decode()}")
                    time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_behind_gunicorn_a_chunked_body_is_refused_before_it_ends(
    caller: Caller, framework_server: str
) -> None:
    """functions-framework reads "the entire request before responding" after every
    response (``request.get_data()``): a refusal must leave it nothing to read, or it waits
    for (and holds) the whole body after all."""
    token = caller.token("user", "chunky-gunicorn")
    started = time.monotonic()
    status, body, _ = stalled_chunked_post(
        framework_server, "/", token, MAX_BODY_BYTES + (256 << 10)
    )
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert f"larger than {MAX_BODY_BYTES} bytes" in body["error"]["message"]
    assert time.monotonic() - started < 10
    # refused before a byte of the body is read: a declared 32 MiB, a wrong Content-Type
    for kwargs, message in (
        ({"declared_length": 32 << 20}, "larger than"),
        ({"content_type": "text/plain"}, "Content-Type must be application/json"),
    ):
        started = time.monotonic()
        status, body, _ = stalled_chunked_post(framework_server, "/", token, 256 << 10, **kwargs)
        assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT"), kwargs
        assert message in body["error"]["message"]
        assert time.monotonic() - started < 10
    status, answer = chunked_post(framework_server, "/", token, [b'{"data": ', b"{}}"])
    assert (status, answer["error"]["details"]["field"]) == (400, "endpointClass")
