"""Each fault of ``stack.chaos.faults`` for about 2 s against one running stack: its effect
while on, and a normal stack after the undo."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis
import requests

from stack.chaos.faults import FaultWindow, inject, start_fault
from stack.platform.handle import StackHandle, health
from stack.platform.procs import process_stat
from tests.stack.test_supervisor import PACK391, Served, call, rate_limit_works, serve

T = TypeVar("T")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # A short Redis budget, so that calls during a pause fail fast (production: 50 ms).
    with serve(tmp_path_factory.mktemp("faults"), PACK391_REDIS_TIMEOUT_MS="500") as running:
        yield running


@pytest.fixture
def handle(served: Served) -> StackHandle:
    return served.handle()


def during(
    handle: StackHandle, fault: str, observe: Callable[[], T], duration: float = 2.0,
    **options: float,
) -> tuple[FaultWindow, T]:  # fmt: skip
    """``inject`` the fault in a thread; ``observe()`` while it is on."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(inject, handle, fault, duration, **options)
        time.sleep(0.3)
        try:
            observed = observe()
        finally:
            window = future.result(timeout=duration + 90)
    assert window.fault == fault
    assert window.started_at < window.undone_at
    assert window.undone_at - window.started_at >= duration
    assert window.recovered_at is not None, window.notes
    assert window.recovered_at >= window.undone_at
    return window, observed


def assert_normal(handle: StackHandle) -> None:
    assert health(handle.reload()) == {}
    assert rate_limit_works(handle, "wallet")["allowed"] is True
    assert list(handle.faults_dir.glob("*.json")) == []


def ping_sec(url: str) -> float:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()  # connect first
        started = time.monotonic()
        client.ping()
        return time.monotonic() - started
    finally:
        client.close()


def test_redis_pause_fails_closed_for_money_and_open_for_swipes(handle: StackHandle) -> None:
    def observe() -> tuple[requests.Response, requests.Response]:
        # at once: each waits for its Redis timeouts (about 1 s here)
        with ThreadPoolExecutor(2) as pool:
            wallet, swipe = pool.map(
                lambda cls: call(handle, "pack391_checkRateLimit", {"endpointClass": cls}),
                ["wallet", "swipe"],
            )
        return wallet, swipe

    window, (wallet, swipe) = during(handle, "redis-pause", observe, 3.0)
    assert wallet.status_code == 503, wallet.text
    error = wallet.json()["error"]
    assert error["status"] == "UNAVAILABLE"
    assert error["details"]["retryAfterSec"] > 0
    assert swipe.status_code == 200, swipe.text
    assert swipe.json()["result"]["allowed"] is True
    assert swipe.json()["result"]["reason"] == "redis_unavailable"
    assert "SIGCONT" in window.notes
    assert_normal(handle)


def test_redis_slow_delays_every_round_trip(handle: StackHandle) -> None:
    assert handle.redis_server_port is not None
    direct = f"redis://127.0.0.1:{handle.redis_server_port}/0"

    def observe() -> tuple[float, float]:
        return ping_sec(handle.redis_url), ping_sec(direct)

    _, (slow, fast) = during(handle, "redis-slow", observe, delay_ms=300)
    assert slow >= 0.3
    assert fast < 0.3
    assert ping_sec(handle.redis_url) < 0.3
    assert_normal(handle)


def test_redis_kill_restarts_it_empty(handle: StackHandle, served: Served) -> None:
    client = redis.Redis.from_url(handle.redis_url, socket_timeout=5)
    client.set("pack391:test:survivor", "1")
    client.close()
    old = handle.children["redis"]
    window, _ = during(handle, "redis-kill", lambda: None)
    assert "restarted as pid" in window.notes
    after = handle.reload()
    assert (after.children["redis"].port, after.children["redis"].pid != old.pid) == (
        old.port, True,
    )  # fmt: skip
    assert redis.Redis.from_url(after.redis_url).get("pack391:test:survivor") is None
    assert "restarted redis (exit -9)" in served.output()
    assert_normal(after)


def test_firestore_pause_times_reads_out(handle: StackHandle) -> None:
    url = (
        f"http://{handle.firestore_host}/v1/projects/{handle.project}"
        "/databases/(default)/documents/pack391_test/doc"
    )

    def observe() -> str:
        try:
            requests.get(url, timeout=1)
        except requests.Timeout:
            return "timeout"
        return "answered"

    _, observed = during(handle, "firestore-pause", observe)
    assert observed == "timeout"
    assert requests.get(url, timeout=5).status_code in (403, 404)  # answers again (rules)
    assert_normal(handle)


def test_functions_kill_is_restarted(handle: StackHandle) -> None:
    old = handle.children["functions"]

    def observe() -> str:
        try:
            requests.get(f"{handle.functions_url}/__/functions", timeout=1)
        except requests.ConnectionError:
            return "refused"
        return "answered"

    window, observed = during(handle, "functions-kill", observe)
    assert observed == "refused"
    assert "restarted as pid" in window.notes
    assert handle.reload().children["functions"].pid != old.pid
    assert_normal(handle)


def test_sandbox_errors_answers_a_share_with_500(handle: StackHandle) -> None:
    def feed() -> list[int]:
        body: dict[str, Any] = {"loadRunId": "faults-test", "limit": 5}
        return [
            requests.post(f"{handle.sandbox_url}/discovery/feed", json=body, timeout=5).status_code
            for _ in range(40)
        ]

    _, statuses = during(handle, "sandbox-errors", feed)
    assert set(statuses) == {200, 500}
    assert set(feed()) == {200}
    assert_normal(handle)


def test_a_fault_left_applied_is_undone_by_the_supervisor(
    handle: StackHandle, served: Served
) -> None:
    """A chaos command that crashed leaves its lease: the supervisor undoes the fault
    at the lease's deadline (here 1 s)."""
    undo = start_fault(handle, "redis-pause", max_sec=1.0)
    pid = handle.children["redis"].pid
    deadline = time.monotonic() + 1
    while (process_stat(pid) or ("?", 0))[0] != "T":  # the signal is delivered async
        assert time.monotonic() < deadline, process_stat(pid)
        time.sleep(0.01)
    served.wait_line("undid redis-pause left applied (its deadline passed)", 5)
    stat = process_stat(pid)
    assert stat is not None and stat[0] != "T"
    window = undo()  # still fine to call: idempotent, and the stack is healthy
    assert window.recovered_at is not None
    assert undo() is window
    assert_normal(handle)


def test_chaos_cli_applies_and_undoes(served: Served, handle: StackHandle) -> None:
    env = {**os.environ, "PACK391_STACK_STATE": str(served.state)}
    result = subprocess.run(
        [str(PACK391), "chaos", "sandbox-errors", "--for", "1", "--error-pct", "100"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    applied, undone = result.stdout.strip().splitlines()[-2:]
    assert applied.startswith("sandbox-errors: applied for 1s (sandbox answers 100% ")
    # undone after its second (the lease's deadline, polled: a little more on a busy box)
    took = re.fullmatch(r"sandbox-errors: undone after (\d+\.\d)s, recovered in .*", undone)
    assert took is not None, undone
    assert 1.0 <= float(took.group(1)) < 3.0, undone
    missing = subprocess.run(
        [str(PACK391), "chaos", "redis-kill", "--for", "1"],
        env={**env, "PACK391_STACK_STATE": str(served.state.with_name("none.json"))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "no running stack" in missing.stderr
    assert served.process.poll() is None  # the refused command touched nothing
    assert_normal(handle)  # and the fault the first one applied is undone: 200s again
