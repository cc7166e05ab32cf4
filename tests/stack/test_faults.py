"""Each fault of ``stack.chaos.faults`` for about 2 s against one running stack: its effect
while on, and a normal stack after the undo."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis
import requests

from stack.chaos.budgets import stack_budgets
from stack.chaos.faults import LEASE_GRACE_SEC, FaultWindow, start_fault
from stack.chaos.probe import register_stand_in
from stack.platform.handle import StackHandle, health
from stack.platform.procs import process_stat
from stack.platform.tokens import role_token
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
    """Apply the fault (it is on when ``start_fault`` returns), then ``observe()`` while
    a timer undoes it ``duration`` later (an observation may wait for the undo). Not
    ``inject`` in a thread and a fixed wait before observing: on a loaded box the fault
    was once applied after the wait, and observed off."""
    options.setdefault("max_sec", duration + LEASE_GRACE_SEC)
    undo = start_fault(handle, fault, **options)
    timer = threading.Timer(duration, undo)  # the undo is idempotent: see below
    timer.start()
    try:
        observed = observe()
    finally:
        timer.join(duration + 90)
        window = undo()  # the timer's window (or the undo, if the timer never ran)
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

    def down() -> bool:  # held down while the fault is on, not back 0.2 s later
        time.sleep(1.0)
        try:
            redis.Redis.from_url(handle.redis_url, socket_timeout=1).ping()
        except redis.ConnectionError:
            return True
        return False

    window, was_down = during(handle, "redis-kill", down)
    assert was_down and "released redis" in window.notes
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


def instances(handle: StackHandle, service: str) -> int:
    health_now = requests.get(f"{handle.sandbox_url}/__health", timeout=5).json()
    return int(health_now[service]["instances"])


def timed(work: Callable[[], T]) -> tuple[float, T]:
    started = time.monotonic()
    result = work()
    return time.monotonic() - started, result


def resize(handle: StackHandle, service: str, count: int, timeout: float) -> int | str:
    """POST the sandbox's resize hook (the local Cloud Run stand-in) as the scaler does."""
    try:
        return requests.post(
            f"{handle.sandbox_url}/__resize",
            json={"serviceId": service, "instances": count},
            timeout=timeout,
        ).status_code
    except requests.Timeout:
        return "gave up"


def manual_scale(handle: StackHandle) -> requests.Response:
    """``pack391_manualScale`` of notification-service up by 0: through the stand-in."""
    return requests.post(
        handle.callable_url("pack391_manualScale"),
        json={"data": {"serviceId": "notification-service", "action": "scale_up",
                       "instanceCount": 0, "reason": "faults test"}},
        headers={"Authorization": f"Bearer {role_token(handle.project, 'admin')}"},
        timeout=30,
    )  # fmt: skip


def test_cloudrun_slow_holds_each_resize_and_manual_scale_answers_in_budget(
    handle: StackHandle,
) -> None:
    """While the stall holds, the stand-in answers a resize after the delay (3 s here); a
    resize whose caller gave up is dropped, never applied late; manualScale, whose hook
    call gives up after 2 s (RESIZE_HOOK_TIMEOUT_SEC), answers UNAVAILABLE within its
    budget. After the undo both answer at once again."""
    budget = stack_budgets(handle)["pack391_manualScale"]  # the edge's, the stack's params
    register_stand_in(handle)  # redis-kill (above) emptied the hooks bootstrap registered
    ai_before = instances(handle, "ai-companion")
    count = instances(handle, "notification-service")

    def observe() -> list[Any]:
        with ThreadPoolExecutor(3) as pool:
            dropped = pool.submit(resize, handle, "ai-companion", ai_before + 1, 0.5)
            waited = pool.submit(timed, lambda: resize(handle, "notification-service", count, 10))
            scaled = pool.submit(timed, lambda: manual_scale(handle))
            return [dropped.result(), waited.result(), scaled.result()]

    window, (dropped, waited, scaled) = during(handle, "cloudrun-slow", observe, 6.0,
                                               delay_ms=3000)  # fmt: skip
    assert "Cloud Run stand-in delay 0" in window.notes
    assert dropped == "gave up"
    took, status = waited
    # at least the delay (a timer); at most 1 s more on a loaded 2-core box
    assert (status, 3.0 <= took < 4.0) == (200, True), took
    took, response = scaled
    error = response.json()["error"]
    assert (response.status_code, error["status"]) == (503, "UNAVAILABLE"), response.text
    assert error["details"]["retryAfterSec"] > 0
    # the hook's 2 s timeout bit (not a refusal before the call), and well within budget
    assert 2.0 <= took <= budget + 1.0, took
    assert took < 2.0 + 3.0, took  # the hook's timeout + the Firestore steps, unloaded
    assert instances(handle, "ai-companion") == ai_before  # the dropped resize never landed
    # after the undo: the stand-in answers at once, and the manual scale goes through
    took, status = timed(lambda: resize(handle, "notification-service", count, 5))
    assert (status, took < 1.0) == (200, True), took
    took, response = timed(lambda: manual_scale(handle))
    assert response.status_code == 200, response.text
    assert took < 3.0, took  # a user budget's worth: Firestore steps and one quick hook call
    assert_normal(handle)


def test_undoing_cloudrun_slow_answers_the_held_resizes_at_once(handle: StackHandle) -> None:
    """The default stall (30 s) outlasts the fault (1.5 s): a resize held by it is answered
    at the undo, not 30 s later."""
    count = instances(handle, "notification-service")

    def observe() -> tuple[float, int | str]:
        return timed(lambda: resize(handle, "notification-service", count, 30))

    _, (took, status) = during(handle, "cloudrun-slow", observe, 1.5)
    # applied before the resize, the undo 1.5 s later; 2 s more for the undo's own
    # request on a loaded box, still far below the 30 s stall
    assert status == 200 and 1.0 <= took < 3.5, took
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
    lines = result.stdout.strip().splitlines()
    (applied,) = [line for line in lines if line.startswith("sandbox-errors: applied")]
    (undone,) = [line for line in lines if line.startswith("sandbox-errors: undone")]
    assert applied.startswith("sandbox-errors: applied for 1s (sandbox answers 100% ")
    # undone after its second (the lease's deadline, polled: a little more on a busy box)
    took = re.fullmatch(r"sandbox-errors: undone after (\d+\.\d)s, recovered in .*", undone)
    assert took is not None, undone
    assert 1.0 <= float(took.group(1)) < 3.0, undone
    # the calls made while it was on, each held to its function's budget
    probed = lines[lines.index(undone) + 1 :]
    assert re.fullmatch(r"sandbox-errors: \d+ calls made while it was on:", probed[0]), probed
    assert {line.split()[0] for line in probed[2:-1]} == {
        "pack391_checkRateLimit", "pack391_checkMarketAccess", "pack391_getMarketControls",
        "pack391_getOpsDashboard",
    }  # fmt: skip
    assert probed[-1].startswith("  held   every call answered within its function's budget")
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
