"""Bad input, everywhere: every callable answers malformed bodies, numbers no
backend can hold, reserved document ids and a refusing Redis with a callable error
(``INVALID_ARGUMENT`` / ``UNAVAILABLE`` in JSON), never ``INTERNAL`` or an HTML 500."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import main
from shared.edge import (
    MAX_BODY_BYTES,
    MAX_BODY_DEPTH,
    MAX_SAFE_INTEGER,
    nests_deeper_than,
    unsafe_number_problem,
)
from shared.models import doc_id_problem
from stack.platform import procs
from tests.conftest import Backends, Caller

CALLABLES = sorted(
    name
    for name, fn in vars(main).items()
    if getattr(getattr(fn, "__firebase_endpoint__", None), "callableTrigger", None) is not None
)
"""Every callable of main.py (the session ``functions`` fixture holds the same ones)."""

DEEP = b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

MALFORMED: dict[str, tuple[bytes, str, str]] = {
    # id: (body, Content-Type, part of the message)
    "empty": (b"", "application/json", "not valid JSON"),
    "truncated": (b'{"data": {"country": "PL"', "application/json", "not valid JSON"),
    "invalid-utf8": (b'{"data": "\xff\xfe"}', "application/json", "not valid JSON"),
    "array": (b"[1, 2]", "application/json", "JSON object"),
    "null": (b"null", "application/json", "JSON object"),
    "missing-data": (b'{"country": "PL"}', "application/json", '"data"'),
    "extra-key": (b'{"data": {}, "extra": 1}', "application/json", "unknown fields: extra"),
    "wrong-content-type": (b'{"data": {}}', "text/plain", "Content-Type"),
    "deep-50000": (DEEP, "application/json", f"deeper than {MAX_BODY_DEPTH} levels"),
    "deep-unclosed": (b'{"data": ' + b"[" * 50_000, "application/json", "deeper than"),
    "nan": (b'{"data": {"x": NaN}}', "application/json", "NaN/Infinity are not JSON"),
    "infinity": (b'{"data": Infinity}', "application/json", "NaN/Infinity are not JSON"),
    "minus-infinity": (b'{"data": [-Infinity]}', "application/json", "NaN/Infinity"),
    "oversize": (
        b'{"data": {"pad": "' + b"x" * MAX_BODY_BYTES + b'"}}',
        "application/json",
        f"larger than {MAX_BODY_BYTES} bytes",
    ),
}


def test_every_callable_is_covered(functions: dict[str, Any]) -> None:
    callables = {
        n for n, f in functions.items() if f.__firebase_endpoint__.callableTrigger is not None
    }
    assert set(CALLABLES) == callables
    assert len(CALLABLES) >= 20


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_body_is_invalid_argument_for_every_callable(caller: Caller, case: str) -> None:
    """Every body against every callable. One test per body, looping over the callables:
    the autouse ``clean`` fixture wipes both backends before each test, which would cost
    more than the calls themselves across a full callables x bodies matrix."""
    body, content_type, message = MALFORMED[case]
    wrong: dict[str, Any] = {}
    for name in CALLABLES:
        res = caller.raw(name, body, content_type, role="admin")
        if not isinstance(res.body, dict):
            wrong[name] = f"HTTP {res.status}, not a JSON answer"
        elif (res.status, res.body.get("error", {}).get("status")) != (400, "INVALID_ARGUMENT"):
            wrong[name] = res.body
        elif message not in res.body["error"]["message"]:
            wrong[name] = res.body["error"]["message"]
    assert not wrong, wrong


def test_deep_body_is_refused_before_authentication(caller: Caller) -> None:
    response = caller.app.test_client().post(
        caller.url("pack391_getMarketControls"), data=DEEP, content_type="application/json"
    )
    assert response.is_json, response.get_data(as_text=True)[:200]
    assert (response.status_code, response.get_json()["error"]["status"]) == (
        400,
        "INVALID_ARGUMENT",
    )


# ------------------------------------------------------- numbers inside data


@pytest.mark.parametrize(
    ("name", "role", "data", "field"),
    [
        (
            "pack391_updateMarketControl",
            "admin",
            {"country": "PL", "config": {"trafficLimit": 2**64}},
            "config.trafficLimit",
        ),
        (
            "pack391_setGeoThrottle",
            "admin",
            {"country": "PL", "regionCapPerMin": 2**64, "reason": "flood"},
            "regionCapPerMin",
        ),
        (
            "pack391_reportServiceMetrics",
            "ops",
            {"serviceId": "api-gateway", "requests": 10**20},
            "requests",
        ),
        (
            "pack391_reportServiceMetrics",
            "ops",
            {"serviceId": "api-gateway", "queueDepth": -(2**63)},
            "queueDepth",
        ),
        (
            "pack391_initScaling",
            "admin",
            {"overrides": {"api-gateway": {"minInstances": 2**60}}},
            "overrides.api-gateway.minInstances",
        ),
        (
            "pack391_startDeployment",
            "admin",
            {"version": "v1", "environment": "prod", "services": ["api", 2**64]},
            "services.1",
        ),
    ],
)
def test_integers_beyond_max_safe_name_their_field(
    caller: Caller, name: str, role: str, data: dict[str, Any], field: str
) -> None:
    res = caller.call(name, data, role=role)
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT"), res.body
    assert res.error["details"]["field"] == field
    assert str(MAX_SAFE_INTEGER) in res.error["message"]


@pytest.mark.parametrize(
    ("name", "role", "data", "field"),
    [
        ("pack391_reportServiceMetrics", "ops", {"serviceId": "api-gateway"}, "requests"),
        ("pack391_updateMarketControl", "admin", {"country": "PL"}, "config.trafficLimit"),
    ],
)
def test_max_safe_integer_itself_reaches_the_model(
    caller: Caller, name: str, role: str, data: dict[str, Any], field: str
) -> None:
    """2^53 - 1 passes the number check; the model's own bound (if any) decides."""
    head, _, leaf = field.rpartition(".")
    body = {**data, head: {leaf: MAX_SAFE_INTEGER}} if head else {**data, leaf: MAX_SAFE_INTEGER}
    res = caller.call(name, body, role=role)
    assert res.status in (200, 400), res.body
    if res.status == 400:
        assert str(MAX_SAFE_INTEGER) not in res.error["message"]


def test_reported_counts_have_a_sane_maximum(caller: Caller) -> None:
    data = {"serviceId": "api-gateway", "requests": 10**13}
    res = caller.call("pack391_reportServiceMetrics", data, role="ops")
    assert (res.error["status"], res.error["details"]["field"]) == ("INVALID_ARGUMENT", "requests")


def test_infinity_literal_in_data_is_invalid_argument(caller: Caller) -> None:
    body = b'{"data": {"serviceId": "api-gateway", "p95LatencyMs": Infinity}}'
    res = caller.raw("pack391_reportServiceMetrics", body, role="ops")
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT")
    assert "NaN/Infinity are not JSON" in res.error["message"]


@pytest.mark.parametrize("number", [b"1e999", b"-1e400"])
def test_overflowing_float_in_data_names_its_field(caller: Caller, number: bytes) -> None:
    """``1e999`` is valid JSON text that Python reads as infinity."""
    body = b'{"data": {"serviceId": "api-gateway", "p95LatencyMs": ' + number + b"}}"
    res = caller.raw("pack391_reportServiceMetrics", body, role="ops")
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT")
    assert res.error["details"]["field"] == "p95LatencyMs"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, None),
        ({"a": MAX_SAFE_INTEGER, "b": -MAX_SAFE_INTEGER, "c": True}, None),
        ({"a": 1e308, "b": -0.0, "c": "Infinity", "d": None}, None),
        ({"a": MAX_SAFE_INTEGER + 1}, "a"),
        ({"a": -MAX_SAFE_INTEGER - 1}, "a"),
        ({"a": float("inf")}, "a"),
        ({"a": float("-inf")}, "a"),
        ({"a": float("nan")}, "a"),
        ({"a": {"b": [1, {"c": 2**64}]}}, "a.b.1.c"),
        ({"first": 2**64, "second": float("nan")}, "first"),
        ({"x": [0, 1, [2, float("nan")]]}, "x.2.1"),
    ],
)
def test_unsafe_number_problem(data: dict[str, Any], problem: str | None) -> None:
    found = unsafe_number_problem(data)
    assert (found[0] if found else None) == problem


# ------------------------------------------------------------- nesting scan


@pytest.mark.parametrize(
    ("raw", "deeper"),
    [
        (b"", False),
        (b"{}", False),
        (b"[" * 32 + b"]" * 32, False),
        (b"[" * 33 + b"]" * 33, True),
        (b'{"a":' * 32 + b"1" + b"}" * 32, False),
        (b'{"a":' * 33 + b"1" + b"}" * 33, True),
        (b"[[], [[]], [[[]]]]" * 1000, False),
        (b"[" * 33, True),  # never closed: the parser recurses before it sees the end
        (b"[" * 20 + b"[]" * 5 + b"[" * 13, True),
        (b'["' + b"[" * 100 + b'"]', False),  # brackets in a string do not count
        (b'["\\"' + b"[" * 100 + b'"]', False),  # nor after an escaped quote
        (b'["\\\\", ' + b"[" * 33 + b"]" * 33 + b"]", True),  # an escaped backslash ends
        (b'"unterminated [[[[' + b"[" * 100, False),  # unterminated string: all string
        (b"]]]]" * 100, False),
    ],
)
def test_nests_deeper_than(raw: bytes, deeper: bool) -> None:
    assert nests_deeper_than(raw, 32) is deeper


def test_nesting_scan_of_a_mebibyte_is_fast() -> None:
    """The adversarial worst case: 1 MiB of brackets nested exactly to the limit
    (32 passes over all of it); about 50 ms here, typical bodies under 10 ms."""
    unit = b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH + b","
    worst = unit * (MAX_BODY_BYTES // len(unit))
    escapes = b'"' + b'\\"' * (MAX_BODY_BYTES // 2 - 1)
    started = time.perf_counter()
    assert not nests_deeper_than(worst, MAX_BODY_DEPTH)
    assert not nests_deeper_than(escapes, MAX_BODY_DEPTH)
    assert time.perf_counter() - started < 1.0


# ------------------------------------------------------ reserved document ids


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ok", None),
        ("a.b_c-d", None),
        ("__", None),
        ("___", None),
        ("é" * 750, None),
        ("", "empty"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("a/b", "'/'"),
        ("____", "reserved"),
        ("__name__", "reserved"),
        ("__x\n__", "reserved"),
        ("é" * 751, "1500 bytes"),
        ("\ud800", "surrogates"),
    ],
)
def test_doc_id_problem(value: str, problem: str | None) -> None:
    found = doc_id_problem(value)
    assert found == problem if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("name", "role", "data", "field"),
    [
        ("pack391_acknowledgeAlert", "ops", {"alertId": "__name__"}, "alertId"),
        ("pack391_acknowledgeAlert", "ops", {"alertId": ".."}, "alertId"),
        ("pack391_acknowledgeAlert", "ops", {"alertId": "."}, "alertId"),
        (
            "pack391_rollbackController",
            "admin",
            {"deploymentId": "__deploy__", "reason": "x"},
            "deploymentId",
        ),
        ("pack391_getDeploymentStatus", "ops", {"deploymentId": "__x__"}, "deploymentId"),
        ("pack391_serviceHealthCheck", "ops", {"serviceId": "a/b"}, "serviceId"),
        ("pack391_getLoadTestResults", "ops", {"runId": "__run__"}, "runId"),
    ],
)
def test_reserved_document_ids_are_invalid_argument(
    caller: Caller, name: str, role: str, data: dict[str, Any], field: str
) -> None:
    res = caller.call(name, data, role=role)
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT"), res.body
    assert res.error["details"]["field"] == field


# ------------------------------------------------------ Redis refusing writes

REPORT = "pack391_reportServiceMetrics"


@pytest.fixture
def admin_redis(backends: Backends) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(backends.redis_url)
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"] or "noeviction"
    try:
        yield client
    finally:
        client.replicaof("NO", "ONE")
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", policy)
        client.close()


def _report_while(caller: Caller, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    with caplog.at_level(logging.WARNING, logger="pack391"):
        res = caller.call(REPORT, {"serviceId": "api-gateway", "cpuPct": 10}, role="ops")
    assert (res.status, res.error["status"]) == (503, "UNAVAILABLE"), res.body
    assert res.error["message"] == "redis is unavailable, try again shortly"
    assert res.error["details"]["dependency"] == "redis"
    return res.error


def test_redis_out_of_memory_is_unavailable(
    caller: Caller, admin_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    assert caller.call("pack391_initScaling", {}).status == 200
    admin_redis.config_set("maxmemory-policy", "noeviction")
    admin_redis.config_set("maxmemory", 1)
    error = _report_while(caller, caplog)
    request_id = error["details"]["requestId"]
    assert any(
        r.levelno == logging.WARNING
        and request_id in r.getMessage()
        and "OutOfMemoryError" in r.getMessage()
        for r in caplog.records
    )


def test_redis_read_only_replica_is_unavailable(
    caller: Caller, admin_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    assert caller.call("pack391_initScaling", {}).status == 200
    admin_redis.replicaof("127.0.0.1", procs.free_port())  # a master that never answers
    error = _report_while(caller, caplog)
    request_id = error["details"]["requestId"]
    assert any(
        request_id in r.getMessage() and "ReadOnlyError" in r.getMessage() for r in caplog.records
    )
