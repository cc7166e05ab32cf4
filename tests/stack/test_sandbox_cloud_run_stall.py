"""The ``cloudrun-slow`` fault in the sandbox (``stack.sandbox.control.CloudRunStall``):
the resize hook, the local stack's Cloud Run API, held while the stall is on, in every
worker, until set back to 0 or its ttl runs out."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stack.sandbox.control import parse_stall
from stack.sandbox.faults import FaultRequestError
from tests.conftest import Backends
from tests.stack.test_sandbox_workers import call, connect, get, sandbox, worker_connections

SERVICE = "notification-service"


@pytest.mark.parametrize(
    "body",
    [{"delayMs": -1}, {"delayMs": "soon"}, {"delayMs": 10, "ttlSec": 0}, ["delayMs"]],
)
def test_a_malformed_stall_is_refused(body: Any) -> None:
    with pytest.raises(FaultRequestError):
        parse_stall(body)


def test_a_stall_reads_as_a_delay_and_a_shared_deadline() -> None:
    delay, until = parse_stall({"delayMs": 1500, "ttlSec": 10})
    assert delay == 1.5
    assert until is not None and 9.0 < until - time.monotonic() <= 10.0
    assert parse_stall({"delayMs": 1500}) == (1.5, None)  # until set back to 0
    assert parse_stall({"delayMs": 0, "ttlSec": 10}) == (0.0, None)


def resize_sec(conn: Any, instances: int) -> float:
    started = time.monotonic()
    status, _ = call(conn, "POST", "/__resize", {"serviceId": SERVICE, "instances": instances})
    assert status == 200
    return time.monotonic() - started


@contextlib.contextmanager
def connections(port: int, workers: int) -> Iterator[dict[int, http.client.HTTPConnection]]:
    """A connection to each worker (one process alone: one connection)."""
    if workers > 1:
        with worker_connections(port, workers) as conns:
            yield conns
        return
    conn = connect(port)
    try:
        yield {0: conn}
    finally:
        conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_each_worker_holds_resizes_while_the_stall_is_on(backends: Backends, workers: int) -> None:
    with sandbox(backends, workers) as (_, port), connections(port, workers) as conns:
        first = conns[0]
        count = get(first, "/__health")[1][SERVICE]["instances"]
        assert call(first, "POST", "/__cloudrun", {"delayMs": 800, "ttlSec": 30}) == (
            200,
            {"delayMs": 800.0, "ttlSec": pytest.approx(30, abs=1)},
        )
        for conn in conns.values():  # told once, held by every worker
            assert get(conn, "/__cloudrun")[1]["delayMs"] == 800.0
            # at least the delay (a timer); at most 0.5 s more for a loaded box
            assert 0.8 <= resize_sec(conn, count) < 1.3
        assert call(first, "POST", "/__cloudrun", {"delayMs": 0})[1]["delayMs"] == 0.0
        for conn in conns.values():
            assert resize_sec(conn, count) < 0.3
        # a stall with a ttl ends by itself at its deadline, in every worker at once
        call(first, "POST", "/__cloudrun", {"delayMs": 5000, "ttlSec": 0.5})
        time.sleep(0.6)
        for conn in conns.values():
            assert get(conn, "/__cloudrun")[1] == {"delayMs": 0.0, "ttlSec": None}
            assert resize_sec(conn, count) < 0.3


def test_a_bad_stall_is_answered_400(backends: Backends) -> None:
    with sandbox(backends, 1) as (_, port):
        conn = connect(port)
        try:
            status, body = call(conn, "POST", "/__cloudrun", {"delayMs": -5})
        finally:
            conn.close()
    assert status == 400 and "delayMs" in body["error"]
