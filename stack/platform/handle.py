"""The running local stack, as its state file describes it, and its health.

The stack (``pack391 serve``) writes ``.local/stack.json`` (or ``$PACK391_STACK_STATE``)
when it is ready and again after every restart: :class:`StackHandle` reads it. Everything
that talks to a running stack (the CLI, chaos, the rehearsal, benchmarks, tests) starts
from a handle; :func:`health` and :func:`wait_healthy` say whether it answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from stack.platform import datastores, procs

DEFAULT_RECOVER_SEC = 60.0
"""How long a caller waits by default for the stack's health checks to pass again."""


class NoStackError(procs.StackError):
    """No running stack at the state file, or the stack did not start the child asked for."""


STATE_ENV = "PACK391_STACK_STATE"
SOURCE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_STATE = SOURCE_DIR / ".local" / "stack.json"


def default_state_path() -> Path:
    """``$PACK391_STACK_STATE``, else ``.local/stack.json`` of the source directory."""
    configured = os.environ.get(STATE_ENV)
    return Path(configured) if configured else DEFAULT_STATE


def faults_dir_for(state_path: Path) -> Path:
    """Where the leases of applied faults live: ``stack.faults/`` next to ``stack.json``."""
    return state_path.with_name(state_path.stem + ".faults")


@dataclass(frozen=True)
class ChildInfo:
    pid: int
    port: int | None


@dataclass(frozen=True)
class StackHandle:
    """The running stack, from its state file (``.local/stack.json``)."""

    path: Path
    supervisor_pid: int
    project: str
    region: str
    functions_url: str
    """Base URL of the functions server, e.g. ``http://127.0.0.1:5001``."""
    sandbox_url: str
    firestore_host: str
    redis_url: str
    """What clients use: the latency proxy when the stack started Redis itself; with
    ``--redis-cluster``, ``redis+cluster://`` of its first node."""
    redis_server_port: int | None
    """The real redis-server's port (None: an external Redis from REDIS_URL, or a cluster)."""
    redis_proxy_control: str | None
    """The latency proxy's control URL (None: no proxy)."""
    auth_emulator_host: str | None = None
    """The Firebase Auth emulator's ``host:port`` (None: started with ``--no-auth-emulator``)."""
    children: Mapping[str, ChildInfo] = field(default_factory=dict)
    faults_dir: Path = Path()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> StackHandle:
        """Read the state file; NoStackError when there is none or its supervisor is gone."""
        path = Path(path) if path is not None else default_state_path()
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise NoStackError(
                f"no running stack: {path} does not exist (start it with `make run`)"
            ) from None
        except (OSError, ValueError) as exc:
            raise NoStackError(f"cannot read {path}: {exc}") from None
        pid = int(state["supervisorPid"])
        if procs.process_stat(pid) is None:
            raise NoStackError(f"no running stack: the supervisor (pid {pid}) of {path} is gone")
        return cls(
            path=path,
            supervisor_pid=pid,
            project=state["project"],
            region=state["region"],
            functions_url=state["functionsUrl"],
            sandbox_url=state["sandboxUrl"],
            firestore_host=state["firestoreHost"],
            redis_url=state["redisUrl"],
            redis_server_port=state.get("redisServerPort"),
            redis_proxy_control=state.get("redisProxyControl"),
            auth_emulator_host=state.get("authEmulatorHost"),
            children={
                name: ChildInfo(int(c["pid"]), c.get("port"))
                for name, c in state.get("children", {}).items()
            },
            faults_dir=Path(state.get("faultsDir") or faults_dir_for(path)),
            raw=state,
        )

    def reload(self) -> StackHandle:
        """The state file as it is now (pids change when the supervisor restarts a child)."""
        return StackHandle.load(self.path)

    def callable_url(self, name: str) -> str:
        return f"{self.functions_url}/{self.project}/{self.region}/{name}"

    def child_pid(self, name: str) -> int:
        """The pid of a child the supervisor started (NoStackError if it did not)."""
        child = self.children.get(name)
        if child is None:
            raise NoStackError(
                f"the stack did not start {name} itself (external server given by "
                "FIRESTORE_EMULATOR_HOST / REDIS_URL?): cannot apply this fault"
            )
        return child.pid


# ---------------------------------------------------------------- health


def _redis_ping(url: str, timeout: float) -> None:
    parts = urlsplit(url)
    with socket.create_connection(
        (parts.hostname or "127.0.0.1", parts.port or 6379), timeout
    ) as s:
        s.settimeout(timeout)
        s.sendall(b"PING\r\n")
        if not s.recv(16).startswith(b"+PONG"):
            raise OSError("no PONG")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return urlsplit(url).scheme.lower().endswith("+cluster")


def cluster_nodes(handle: StackHandle) -> dict[str, int]:
    """The stack's own Redis Cluster nodes (children ``redis-1``..): name -> port."""
    return {
        name: child.port
        for name, child in handle.children.items()
        if name.startswith("redis-") and name[6:].isdigit() and child.port is not None
    }


def _redis_cluster_ok(handle: StackHandle, timeout: float) -> None:
    """Every node of the stack's cluster (or, for an external one, the node of its URL)
    answers and says ``cluster_state:ok``; OSError naming the first that does not."""
    parts = urlsplit(handle.redis_url)
    nodes = {name: ("127.0.0.1", port) for name, port in cluster_nodes(handle).items()} or {
        "redis": (parts.hostname or "127.0.0.1", parts.port or 6379)
    }
    for name, (host, port) in nodes.items():
        state = datastores.cluster_info(port, timeout, host).get("cluster_state")
        if state != "ok":
            raise OSError(f"{name} (port {port}): cluster_state:{state}")


def health(handle: StackHandle, timeout: float = 1.0) -> dict[str, str]:
    """What does not answer right now: component -> error (empty: all healthy)."""
    checks: dict[str, Callable[[], Any]] = {
        "firestore": lambda: requests.get(
            f"http://{handle.firestore_host}/", timeout=timeout
        ).raise_for_status(),
        "redis": lambda: (
            _redis_cluster_ok(handle, timeout)
            if is_cluster_url(handle.redis_url)
            else _redis_ping(handle.redis_url, timeout)
        ),
        "functions": lambda: requests.get(
            f"{handle.functions_url}/__/functions", timeout=timeout * 2
        ).raise_for_status(),
        "sandbox": lambda: requests.get(
            f"{handle.sandbox_url}/__health", timeout=timeout
        ).raise_for_status(),
    }
    failed: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except (OSError, requests.RequestException) as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
    return failed


def wait_healthy(handle: StackHandle, timeout_sec: float = DEFAULT_RECOVER_SEC) -> float | None:
    """time.time() when every health check passed, None when ``timeout_sec`` ran out."""
    deadline = time.monotonic() + timeout_sec
    while True:
        with contextlib.suppress(NoStackError):
            handle = handle.reload()
        if not health(handle):
            return time.time()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
