"""The edge: wire protocol, auth, validation and error translation of every callable."""

from __future__ import annotations

import logging
from typing import Any

import flask
import pytest
from pydantic import StrictInt

from shared.auth import Role
from shared.edge import CallContext, callable_function, edge_spec_of, request_id_of
from shared.errors import NotFound, RateLimited
from shared.models import RequestModel, WireModel
from stack.platform.server import create_app
from tests.conftest import Caller

NAME = "pack391_getMarketControls"


class EchoRequest(RequestModel):
    value: StrictInt = 0


class EchoResult(WireModel):
    value: int
    caller_uid: str
    request_id: str


@callable_function(role=Role.USER, request=EchoRequest)
def pack391_testEcho(ctx: CallContext, req: EchoRequest) -> EchoResult:
    if req.value == 13:
        raise RuntimeError("secret internals: password=hunter2")
    if req.value == 404:
        raise NotFound("no such thing")
    if req.value == 429:
        raise RateLimited("slow down", retry_after_sec=7, limit=5)
    return EchoResult(value=req.value, caller_uid=ctx.caller.uid, request_id=ctx.request_id)


@pytest.fixture
def echo(backends: Any) -> Caller:
    app = create_app({"pack391_testEcho": pack391_testEcho}, backends.project)
    return Caller(app, backends.project)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"", "application/json", "not valid JSON"),
        (b'{"data": {"country": "PL"', "application/json", "not valid JSON"),
        (b'{"data": "\xff\xfe"}', "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b"null", "application/json", "JSON object"),
        (b'{"country": "PL"}', "application/json", '"data"'),
        (b'{"data": {}, "extra": 1}', "application/json", "unknown fields: extra"),
        (b'{"data": {}}', "text/plain", "Content-Type"),
        (b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json", "deeper"),
        (b'{"data": {"x": NaN}}', "application/json", "NaN/Infinity are not JSON"),
        (b'{"data": "' + b"x" * (1 << 20) + b'"}', "application/json", "larger than"),
    ],
)
def test_malformed_bodies_are_invalid_argument(
    caller: Caller, body: bytes, content_type: str, message: str
) -> None:
    res = caller.raw(NAME, body, content_type)
    assert res.status == 400
    assert res.error["status"] == "INVALID_ARGUMENT"
    assert message in res.error["message"]


def test_null_data_is_an_empty_request(caller: Caller) -> None:
    res = caller.raw(NAME, b'{"data": null}')
    assert res.status == 200
    assert res.result == {
        "markets": [],
        "allMarketsPaused": False,
        "allMarketsPausedReason": None,
        "stale": False,
        "staleAgeSec": None,
    }


def test_charset_in_content_type_is_accepted(caller: Caller) -> None:
    res = caller.raw(NAME, b'{"data": {}}', "application/json; charset=utf-8")
    assert res.status == 200


def test_bad_token_is_unauthenticated(caller: Caller) -> None:
    response = caller.app.test_client().post(
        caller.url(NAME), json={"data": {}}, headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["status"] == "UNAUTHENTICATED"


def test_token_for_another_project_is_rejected(caller: Caller) -> None:
    from stack.platform.tokens import role_token

    token = role_token("some-other-project", "admin")
    response = caller.app.test_client().post(
        caller.url(NAME), json={"data": {}}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_success_carries_caller_and_request_id(echo: Caller) -> None:
    result = echo.call("pack391_testEcho", {"value": 5}, role="user", uid="u-7").result
    assert (result["value"], result["callerUid"]) == (5, "u-7")
    assert len(result["requestId"]) == 32


def test_trace_header_becomes_the_request_id() -> None:
    app = flask.Flask("t")
    with app.test_request_context(
        "/", headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    ):
        assert request_id_of(flask.request) == "105445aa7843bc8bf206b12000100000"


def test_unexpected_error_is_internal_without_internals(
    echo: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="pack391"):
        res = echo.call("pack391_testEcho", {"value": 13}, role="user")
    assert (res.status, res.error["status"], res.error["message"]) == (
        500,
        "INTERNAL",
        "internal error",
    )
    assert "hunter2" not in str(res.body)
    request_id = res.error["details"]["requestId"]
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_domain_errors_map_to_codes(echo: Caller) -> None:
    missing = echo.call("pack391_testEcho", {"value": 404}, role="user")
    assert (missing.status, missing.error["status"]) == (404, "NOT_FOUND")
    limited = echo.call("pack391_testEcho", {"value": 429}, role="user")
    assert (limited.status, limited.error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert (limited.error["details"]["retryAfterSec"], limited.error["details"]["limit"]) == (7, 5)


def test_wrong_type_names_the_field(echo: Caller) -> None:
    res = echo.call("pack391_testEcho", {"value": "5"}, role="user")
    assert (res.error["status"], res.error["details"]["field"]) == ("INVALID_ARGUMENT", "value")


def test_cors_preflight_is_answered(caller: Caller) -> None:
    response = caller.app.test_client().options(
        caller.url(NAME),
        headers={"Origin": "https://avalo.app", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://avalo.app")


def test_unknown_function_is_not_found(caller: Caller) -> None:
    res = caller.call("pack391_nope", {})
    assert (res.status, res.error["status"]) == (404, "NOT_FOUND")


def test_every_callable_declares_a_role(functions: dict[str, Any]) -> None:
    callables = {
        name: fn
        for name, fn in functions.items()
        if fn.__firebase_endpoint__.callableTrigger is not None
    }
    assert callables
    for name, fn in callables.items():
        spec = edge_spec_of(fn)
        assert spec is not None and isinstance(spec.role, Role), name
