"""Faults on demand against the running local stack (``pack391 chaos``).

The stack (``pack391 serve``) writes ``.local/stack.json`` (or ``$PACK391_STACK_STATE``)
when it is ready and again after every restart: :class:`StackHandle` reads it.

    redis-kill       SIGKILL the redis-server child; the supervisor restarts it EMPTY on the
                     same port (a Memorystore basic-tier restart). Undo: wait for it.
    redis-pause      SIGSTOP the redis-server (connections hang); undo: SIGCONT.
    redis-slow       every command waits ``delay_ms`` (200) in the latency proxy in front
                     of redis-server; undo: delay 0.
    firestore-pause  SIGSTOP the emulator's process group (the JVM); undo: SIGCONT.
    functions-kill   SIGKILL the functions server; the supervisor restarts it.
    sandbox-errors   the load sandbox answers ``error_pct`` % (50) of its requests with 500.

Every fault is bounded in time, at four levels:

1. :func:`inject` (and ``pack391 chaos``) undo in ``finally``, Ctrl-C included.
2. A pause/slow/errors fault is recorded as a *lease* file in the faults directory
   (``stack.faults/`` next to ``stack.json``) before it is applied: the holder's pid and
   a deadline (``max_sec``). The supervisor checks the leases twice a second and undoes
   one whose holder died or whose deadline passed; the next ``pack391 chaos`` does too.
3. redis-slow and sandbox-errors are set with a ttl in the child itself (the proxy and
   the sandbox revert to normal by themselves at the deadline).
4. The supervisor SIGCONTs a child it finds stopped with no lease for
   ``STOPPED_GRACE_SEC`` (a stray ``kill -STOP``), and wakes a stopped child before
   stopping it on Ctrl-C.

Options (floats): ``delay_ms`` (redis-slow), ``error_pct`` (sandbox-errors),
``max_sec`` (the lease's bound, default 300 s; :func:`inject` sets duration + 30 s) and
``recover_sec`` (how long the undo waits for the stack's health checks, default 60 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from stack import latency_proxy
from stack.platform import procs

FAULTS = (
    "redis-kill",
    "redis-pause",
    "redis-slow",
    "firestore-pause",
    "functions-kill",
    "sandbox-errors",
)

STATE_ENV = "PACK391_STACK_STATE"
SOURCE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STATE = SOURCE_DIR / ".local" / "stack.json"

DEFAULT_DELAY_MS = 200.0
DEFAULT_ERROR_PCT = 50.0
DEFAULT_MAX_SEC = 300.0
"""A fault applied through :func:`start_fault` is undone by the supervisor after this."""
LEASE_GRACE_SEC = 30.0
""":func:`inject`'s lease outlives its duration by this much (the undo's own time)."""
DEFAULT_RECOVER_SEC = 60.0
"""How long an undo waits for the stack's health checks to pass again."""
STOPPED_GRACE_SEC = 10.0
"""A child stopped (SIGSTOP) with no lease is woken by the supervisor after this."""

OPTIONS = frozenset({"delay_ms", "error_pct", "max_sec", "recover_sec"})


class FaultError(RuntimeError):
    """The fault could not be applied (no stack, unknown fault, nothing to apply it to)."""


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
    """What clients use: the latency proxy when the stack started Redis itself."""
    redis_server_port: int | None
    """The real redis-server's port (None: an external Redis from REDIS_URL)."""
    redis_proxy_control: str | None
    """The latency proxy's control URL (None: no proxy)."""
    children: Mapping[str, ChildInfo] = field(default_factory=dict)
    faults_dir: Path = Path()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> StackHandle:
        """Read the state file; FaultError when there is none or its supervisor is gone."""
        path = Path(path) if path is not None else default_state_path()
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise FaultError(
                f"no running stack: {path} does not exist (start it with `make run`)"
            ) from None
        except (OSError, ValueError) as exc:
            raise FaultError(f"cannot read {path}: {exc}") from None
        pid = int(state["supervisorPid"])
        if procs.process_stat(pid) is None:
            raise FaultError(f"no running stack: the supervisor (pid {pid}) of {path} is gone")
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
        """The pid of a child the supervisor started (FaultError if it did not)."""
        child = self.children.get(name)
        if child is None:
            raise FaultError(
                f"the stack did not start {name} itself (external server given by "
                "FIRESTORE_EMULATOR_HOST / REDIS_URL?): cannot apply this fault"
            )
        return child.pid


@dataclass(frozen=True)
class FaultWindow:
    fault: str
    started_at: float
    """time.time() when the fault was applied."""
    undone_at: float
    recovered_at: float | None
    """When the stack answered its health checks again after the undo (None: not in time)."""
    notes: str


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


def health(handle: StackHandle, timeout: float = 1.0) -> dict[str, str]:
    """What does not answer right now: component -> error (empty: all healthy)."""
    checks: dict[str, Callable[[], Any]] = {
        "firestore": lambda: requests.get(
            f"http://{handle.firestore_host}/", timeout=timeout
        ).raise_for_status(),
        "redis": lambda: _redis_ping(handle.redis_url, timeout),
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
        with contextlib.suppress(FaultError):
            handle = handle.reload()
        if not health(handle):
            return time.time()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


# ---------------------------------------------------------------- leases


def _lease_path(handle: StackHandle, fault: str) -> Path:
    return handle.faults_dir / f"{fault}-{uuid.uuid4().hex[:8]}.json"


def _write_lease(path: Path, lease: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(lease))
    tmp.replace(path)


def _leases(faults_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(faults_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append((path, json.loads(path.read_text())))
    return found


def leased_pids(faults_dir: Path) -> set[int]:
    """Pids a live lease keeps stopped (the supervisor leaves those alone)."""
    return {
        int(lease["undo"]["pid"])
        for _, lease in _leases(faults_dir)
        if lease.get("undo", {}).get("kind") == "sigcont"
    }


def _holder_alive(pid: int) -> bool:
    stat = procs.process_stat(pid)
    return stat is not None and stat[0] != "Z"


def _undo(handle: StackHandle, undo: Mapping[str, Any]) -> str:
    """Undo one applied fault (idempotent); what was done."""
    kind = undo.get("kind")
    if kind == "sigcont":
        pid = int(undo["pid"])
        stat = procs.process_stat(pid)
        if stat is None or stat[1] != handle.supervisor_pid:
            return f"pid {pid} is gone (restarted?): nothing to wake"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
        return f"SIGCONT pid {pid}"
    if kind == "proxy":
        latency_proxy.set_delay(str(undo["control"]), 0)
        return "proxy delay 0"
    if kind == "sandbox":
        _sandbox_errors(str(undo["url"]), 0, None)
        return "sandbox errors 0%"
    return "nothing to undo"


def reap(handle: StackHandle, now: float | None = None) -> list[str]:
    """Undo every leased fault whose holder died or whose deadline passed (the
    supervisor calls this twice a second, ``pack391 chaos`` before applying); a line
    per fault undone."""
    now = time.time() if now is None else now
    done = []
    for path, lease in _leases(handle.faults_dir):
        holder = int(lease.get("holderPid", 0))
        expired = now >= float(lease.get("undoBy", 0))
        orphaned = holder != os.getpid() and not _holder_alive(holder)
        if not (expired or orphaned):
            continue
        why = "its deadline passed" if expired else f"its holder (pid {holder}) is gone"
        try:
            what = _undo(handle, lease.get("undo", {}))
        except (OSError, requests.RequestException) as exc:
            what = f"undo failed ({exc}); the child's own ttl still ends it"
        path.unlink(missing_ok=True)
        done.append(f"undid {lease.get('fault')} left applied ({why}): {what}")
    return done


# ---------------------------------------------------------------- applying


def _signal_child(handle: StackHandle, name: str, sig: signal.Signals) -> int:
    """Send ``sig`` to a child's whole process group; its pid."""
    pid = handle.child_pid(name)
    stat = procs.process_stat(pid)
    if stat is None or stat[1] != handle.supervisor_pid:
        raise FaultError(
            f"{name} (pid {pid}) is not a running child of the supervisor "
            f"(pid {handle.supervisor_pid}): is {handle.path} stale?"
        )
    os.killpg(pid, sig)
    return pid


def _sandbox_errors(url: str, pct: float, ttl_sec: float | None) -> None:
    response = requests.post(
        f"{url}/__faults", json={"errorPct": pct, "ttlSec": ttl_sec}, timeout=5
    )
    response.raise_for_status()


def _wait_restarted(handle: StackHandle, name: str, old_pid: int, timeout_sec: float) -> str:
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        with contextlib.suppress(FaultError):
            child = handle.reload().children.get(name)
            if child is not None and child.pid != old_pid:
                return f"; restarted as pid {child.pid}"
        time.sleep(0.1)
    return f"; NOT restarted within {timeout_sec:.0f}s"


class Undo:
    """The undo of an applied fault: call it (any number of times) for the window."""

    def __init__(
        self,
        handle: StackHandle,
        fault: str,
        started_at: float,
        notes: str,
        action: Callable[[], str],
        lease: Path | None,
        recover_sec: float,
    ) -> None:
        self.handle = handle
        self.fault = fault
        self.started_at = started_at
        self.notes = notes
        self._action = action
        self._lease = lease
        self._recover_sec = recover_sec
        self._lock = threading.Lock()
        self._undone_at: float | None = None
        self._window: FaultWindow | None = None

    def __call__(self) -> FaultWindow:
        with self._lock:
            if self._window is not None:
                return self._window
            if self._undone_at is None:
                self._undone_at = time.time()
                try:
                    done = self._action()
                except (OSError, requests.RequestException) as exc:
                    done = f"; undo failed: {exc} (the lease/ttl still ends it)"
                else:
                    if self._lease is not None:
                        self._lease.unlink(missing_ok=True)
                self.notes += done
            recovered = wait_healthy(self.handle, self._recover_sec)
            if recovered is None:
                failing = health(self.handle)
                self.notes += f"; not healthy after {self._recover_sec:.0f}s: {failing}"
            self._window = FaultWindow(
                self.fault, self.started_at, self._undone_at, recovered, self.notes
            )
            return self._window


def start_fault(handle: StackHandle, fault: str, **options: float) -> Callable[[], FaultWindow]:
    """Apply now; returns the undo, which undoes (idempotent), waits for recovery
    (bounded) and returns the window."""
    if fault not in FAULTS:
        raise FaultError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    unknown = set(options) - OPTIONS
    if unknown:
        raise FaultError(f"unknown options {sorted(unknown)}: {sorted(OPTIONS)}")
    handle = handle.reload()
    reap(handle)
    max_sec = float(options.get("max_sec", DEFAULT_MAX_SEC))
    recover_sec = float(options.get("recover_sec", DEFAULT_RECOVER_SEC))
    if max_sec <= 0:
        raise FaultError("max_sec must be > 0")
    lease: Path | None = None
    undo_spec: dict[str, Any] = {}
    action: Callable[[], str]
    started = time.time()

    if fault in ("redis-kill", "functions-kill"):
        name = "redis" if fault == "redis-kill" else "functions"
        pid = _signal_child(handle, name, signal.SIGKILL)
        port = handle.children[name].port
        notes = f"{name} pid {pid} (port {port}) SIGKILLed"

        def action() -> str:
            return _wait_restarted(handle, name, pid, recover_sec)

    elif fault in ("redis-pause", "firestore-pause"):
        name = "redis" if fault == "redis-pause" else "firestore-emulator"
        pid = handle.child_pid(name)
        undo_spec = {"kind": "sigcont", "pid": pid, "child": name}
        lease = _lease_path(handle, fault)
        _write_lease(lease, _lease_body(fault, started, max_sec, undo_spec))
        try:
            _signal_child(handle, name, signal.SIGSTOP)
        except BaseException:
            lease.unlink(missing_ok=True)
            raise
        notes = f"{name} pid {pid} SIGSTOPped (process group)"

        def action() -> str:
            return "; " + _undo(handle, undo_spec)

    elif fault == "redis-slow":
        control = handle.redis_proxy_control
        if not control:
            raise FaultError("no latency proxy: the stack did not start Redis itself (REDIS_URL)")
        delay_ms = float(options.get("delay_ms", DEFAULT_DELAY_MS))
        undo_spec = {"kind": "proxy", "control": control}
        lease = _lease_path(handle, fault)
        _write_lease(lease, _lease_body(fault, started, max_sec, undo_spec))
        try:
            latency_proxy.set_delay(control, delay_ms, max_sec)
        except BaseException:
            lease.unlink(missing_ok=True)
            raise
        notes = f"Redis proxy delay {delay_ms:.0f} ms per command"

        def action() -> str:
            return "; " + _undo(handle, undo_spec)

    else:  # sandbox-errors
        pct = float(options.get("error_pct", DEFAULT_ERROR_PCT))
        if not 0 <= pct <= 100:
            raise FaultError("error_pct must be within 0-100")
        undo_spec = {"kind": "sandbox", "url": handle.sandbox_url}
        lease = _lease_path(handle, fault)
        _write_lease(lease, _lease_body(fault, started, max_sec, undo_spec))
        try:
            _sandbox_errors(handle.sandbox_url, pct, max_sec)
        except BaseException:
            lease.unlink(missing_ok=True)
            raise
        notes = f"sandbox answers {pct:.0f}% of requests with 500"

        def action() -> str:
            return "; " + _undo(handle, undo_spec)

    return Undo(handle, fault, started, notes, action, lease, recover_sec)


def _lease_body(fault: str, started: float, max_sec: float, undo: dict[str, Any]) -> dict[str, Any]:
    return {
        "fault": fault,
        "holderPid": os.getpid(),
        "appliedAt": started,
        "undoBy": started + max_sec,
        "undo": undo,
    }


def inject(handle: StackHandle, fault: str, duration_sec: float, **options: float) -> FaultWindow:
    """Apply, wait duration_sec, undo; always undoes (finally), even on KeyboardInterrupt."""
    options.setdefault("max_sec", duration_sec + LEASE_GRACE_SEC)
    undo = start_fault(handle, fault, **options)
    try:
        time.sleep(duration_sec)
    finally:
        window = undo()
    return window
