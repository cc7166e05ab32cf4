"""`pack391 serve` restarts what dies: Redis empty on the same port, the
functions server on its port; a line on stdout each; Ctrl-C still leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from stack.platform.handle import StackHandle
from stack.platform.procs import free_port
from stack.platform.tokens import role_token
from tests.conftest import ROOT
from tests.stack.test_local_stack import alive, descendants

PACK391 = Path(sys.executable).with_name("pack391")


@dataclass
class Served:
    """A running ``pack391 serve`` and everything it printed (read by a thread)."""

    process: subprocess.Popen[str]
    state: Path
    lines: list[str] = field(default_factory=list)

    def handle(self) -> StackHandle:
        return StackHandle.load(self.state)

    def wait_line(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in:\n" + "".join(self.lines[-30:]))

    def output(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def serve(tmp: Path, **extra_env: str) -> Iterator[Served]:
    """``pack391 serve`` on free ports with its state file in ``tmp``; killed at the end
    if a test did not stop it."""
    assert PACK391.exists(), "the pack391 CLI is not installed in the venv (make setup)"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL", "GCLOUD_PROJECT")
    }
    state = tmp / "stack.json"
    env.update(
        PACK391_PORT=str(free_port()),
        PACK391_SANDBOX_PORT=str(free_port()),
        PACK391_STACK_STATE=str(state),
        **extra_env,
    )
    process = subprocess.Popen(
        # no Auth emulator: ~10 s of a core per stack, which no test here uses (harness.py)
        [str(PACK391), "serve", "--log-dir", str(tmp / "logs"), "--no-auth-emulator"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(process, state)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            served.lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            served.wait_line("ready", 120)
        except AssertionError:
            pytest.fail("pack391 serve did not become ready:\n" + served.output())
        assert state.exists()
        yield served
    finally:
        if process.poll() is None:
            for pid in descendants(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()


def call(
    handle: StackHandle, name: str, data: Any, uid: str | None = None, timeout: float = 10
) -> requests.Response:
    token = role_token(handle.project, "user", uid or f"u-{uuid.uuid4().hex[:8]}")
    return requests.post(
        handle.callable_url(name),
        json={"data": data},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def rate_limit_works(handle: StackHandle, endpoint_class: str = "swipe") -> dict[str, Any]:
    """Poll until a checkRateLimit call is decided by Redis again (stale pooled
    connections fail once after a restart); its result."""
    deadline = time.monotonic() + 15
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            response = call(handle, "pack391_checkRateLimit", {"endpointClass": endpoint_class})
            last = response.text
            if response.status_code == 200:
                result: dict[str, Any] = response.json()["result"]
                if result["reason"] != "redis_unavailable":
                    return result
        time.sleep(0.2)
    raise AssertionError(f"checkRateLimit did not work again: {last}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("supervised")) as running:
        yield running


def test_state_file_describes_the_stack(served: Served) -> None:
    state = json.loads(served.state.read_text())
    assert state["supervisorPid"] == served.process.pid
    assert set(state["children"]) == {
        "firestore-emulator", "redis", "redis-proxy", "functions", "sandbox",
    }  # fmt: skip
    proxy_port = state["children"]["redis-proxy"]["port"]
    assert state["redisUrl"] == f"redis://127.0.0.1:{proxy_port}/0"
    assert state["redisServerPort"] == state["children"]["redis"]["port"] != proxy_port
    assert state["redisProxyControl"].startswith("http://127.0.0.1:")
    handle = served.handle()
    assert handle.functions_url == state["functionsUrl"]
    assert requests.get(f"{handle.sandbox_url}/__health", timeout=5).status_code == 200


def test_killed_redis_comes_back_empty_on_the_same_port(served: Served) -> None:
    before = served.handle()
    client = redis.Redis.from_url(before.redis_url, socket_timeout=5)
    client.set("pack391:test:marker", "1")
    assert rate_limit_works(before)["allowed"] is True
    old = before.children["redis"]
    os.kill(old.pid, signal.SIGKILL)
    line = served.wait_line("restarted redis", 10)
    assert "(exit -9)" in line, line
    after = served.handle()
    assert after.children["redis"].port == old.port
    assert after.children["redis"].pid != old.pid
    assert after.redis_url == before.redis_url  # clients keep their URL (the proxy)
    client = redis.Redis.from_url(after.redis_url, socket_timeout=5)
    deadline = time.monotonic() + 5
    while True:  # the proxy closed the old connection with the old server
        try:
            assert client.get("pack391:test:marker") is None  # empty
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    client.close()
    assert rate_limit_works(after)["reason"] == "ok"
    assert served.process.poll() is None


def test_killed_functions_server_comes_back(served: Served) -> None:
    before = served.handle()
    old = before.children["functions"]
    os.killpg(old.pid, signal.SIGKILL)
    line = served.wait_line("restarted functions", 60)
    assert "(exit -9)" in line, line
    after = served.handle()
    assert after.children["functions"].port == old.port
    assert after.children["functions"].pid != old.pid
    assert rate_limit_works(after)["allowed"] is True
    assert served.process.poll() is None


def test_sigint_still_stops_everything(served: Served) -> None:
    children = descendants(served.process.pid)
    assert len(children) >= 5  # emulator, redis-server, proxy, functions, sandbox
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if alive(pid)] == []
    assert not served.state.exists()
