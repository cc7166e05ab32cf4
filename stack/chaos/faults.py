"""Faults on demand against the running local stack (``pack391 chaos``): a table of
objects that apply and undo.

Each fault is one object of :data:`FAULT_TABLE`, with the same three steps:

- ``plan(handle, options)`` checks that the fault can be applied to this stack and
  returns a :class:`Plan`: what will be done, and the *record* (plain JSON) that both
  ``apply`` and ``undo`` work from;
- ``apply(handle, record)`` breaks one thing now;
- ``undo(handle, record, recover_sec)`` takes it back (idempotent), from the record
  alone, so that whoever finds a lease left behind (the supervisor, the next
  ``pack391 chaos``) can.

A *leased* fault's lease file (below) is written between ``plan`` and ``apply``; a kill
has nothing to undo but waiting for the supervisor's restart, so it is not leased. A new
fault is a new class (or a new row of an existing one) in :data:`FAULT_TABLE`.

Every fault is bounded in time, at four levels:

1. :func:`inject` (and ``pack391 chaos``) undo in ``finally``, Ctrl-C included.
2. A leased fault is recorded as a *lease* file in the faults directory (``stack.faults/``
   next to ``stack.json``) before it is applied: the holder's pid, a deadline
   (``max_sec``) and the undo record. The supervisor checks the leases twice a second and
   undoes one whose holder died or whose deadline passed; the next ``pack391 chaos`` does
   too.
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
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import requests

from stack import latency_proxy
from stack.platform import procs
from stack.platform.handle import DEFAULT_RECOVER_SEC, StackHandle, health, wait_healthy

DEFAULT_DELAY_MS = 200.0
DEFAULT_ERROR_PCT = 50.0
DEFAULT_MAX_SEC = 300.0
"""A fault applied through :func:`start_fault` is undone by the supervisor after this."""
LEASE_GRACE_SEC = 30.0
""":func:`inject`'s lease outlives its duration by this much (the undo's own time)."""
STOPPED_GRACE_SEC = 10.0
"""A child stopped (SIGSTOP) with no lease is woken by the supervisor after this."""

OPTIONS = frozenset({"delay_ms", "error_pct", "max_sec", "recover_sec"})


class FaultError(procs.StackError):
    """The fault could not be applied (unknown fault or option, nothing to apply it to)."""


@dataclass(frozen=True)
class FaultOptions:
    """A fault's options, checked (:func:`parse_options`)."""

    max_sec: float = DEFAULT_MAX_SEC
    recover_sec: float = DEFAULT_RECOVER_SEC
    delay_ms: float = DEFAULT_DELAY_MS
    error_pct: float = DEFAULT_ERROR_PCT


def parse_options(options: Mapping[str, float]) -> FaultOptions:
    """The options as given to :func:`start_fault`; FaultError naming a bad one."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise FaultError(f"unknown options {sorted(unknown)}: {sorted(OPTIONS)}")
    parsed = FaultOptions(**{k: float(v) for k, v in options.items()})
    if parsed.max_sec <= 0:
        raise FaultError("max_sec must be > 0")
    if not 0 <= parsed.error_pct <= 100:
        raise FaultError("error_pct must be within 0-100")
    return parsed


@dataclass(frozen=True)
class Plan:
    """A fault about to be applied: what it does, and the record apply and undo use."""

    notes: str
    record: Mapping[str, Any] = field(default_factory=dict)


class Fault(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str:
        """One line for ``pack391 chaos --help``."""
        ...

    @property
    def leased(self) -> bool:
        """True: applied under a lease (undone by whoever finds it expired or orphaned)."""
        ...

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        """Check the fault applies to this stack (FaultError if not); its plan."""
        ...

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        """Break it now."""
        ...

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        """Take the fault back (idempotent); what was done."""
        ...


# ---------------------------------------------------------------- the faults


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


@dataclass(frozen=True)
class KillChild:
    """SIGKILL a child; the supervisor restarts it. Undo: wait for the restart."""

    name: str
    child: str
    summary: str
    leased: ClassVar[bool] = False

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        pid = handle.child_pid(self.child)
        port = handle.children[self.child].port
        return Plan(f"{self.child} pid {pid} (port {port}) SIGKILLed", {"pid": pid})

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        _signal_child(handle, self.child, signal.SIGKILL)

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        old_pid = int(record["pid"])
        deadline = time.monotonic() + recover_sec
        while time.monotonic() < deadline:
            with contextlib.suppress(procs.StackError):
                child = handle.reload().children.get(self.child)
                if child is not None and child.pid != old_pid:
                    return f"restarted as pid {child.pid}"
            time.sleep(0.1)
        return f"NOT restarted within {recover_sec:.0f}s"


@dataclass(frozen=True)
class PauseChild:
    """SIGSTOP a child's process group (connections hang). Undo: SIGCONT."""

    name: str
    child: str
    summary: str
    leased: ClassVar[bool] = True

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        pid = handle.child_pid(self.child)
        return Plan(f"{self.child} pid {pid} SIGSTOPped (process group)", {"pid": pid})

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        _signal_child(handle, self.child, signal.SIGSTOP)

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        pid = int(record["pid"])
        stat = procs.process_stat(pid)
        if stat is None or stat[1] != handle.supervisor_pid:
            return f"pid {pid} is gone (restarted?): nothing to wake"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
        return f"SIGCONT pid {pid}"


@dataclass(frozen=True)
class SlowRedis:
    """Every Redis command waits ``delay_ms`` in the latency proxy. Undo: delay 0."""

    name: str = "redis-slow"
    summary: str = (
        "every command waits delay_ms (200) in the latency proxy in front of redis-server"
    )
    leased: ClassVar[bool] = True

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        control = handle.redis_proxy_control
        if not control:
            raise FaultError("no latency proxy: the stack did not start Redis itself (REDIS_URL)")
        return Plan(
            f"Redis proxy delay {options.delay_ms:.0f} ms per command",
            {"control": control, "delayMs": options.delay_ms, "ttlSec": options.max_sec},
        )

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        latency_proxy.set_delay(str(record["control"]), record["delayMs"], record["ttlSec"])

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        latency_proxy.set_delay(str(record["control"]), 0)
        return "proxy delay 0"


def _sandbox_errors(url: str, pct: float, ttl_sec: float | None) -> None:
    response = requests.post(
        f"{url}/__faults", json={"errorPct": pct, "ttlSec": ttl_sec}, timeout=5
    )
    response.raise_for_status()


@dataclass(frozen=True)
class SandboxErrors:
    """The load sandbox answers ``error_pct`` % of its requests with 500. Undo: 0 %."""

    name: str = "sandbox-errors"
    summary: str = "the load sandbox answers error_pct % (50) of its requests with 500"
    leased: ClassVar[bool] = True

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        return Plan(
            f"sandbox answers {options.error_pct:.0f}% of requests with 500",
            {"url": handle.sandbox_url, "errorPct": options.error_pct, "ttlSec": options.max_sec},
        )

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        _sandbox_errors(str(record["url"]), float(record["errorPct"]), record["ttlSec"])

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        _sandbox_errors(str(record["url"]), 0, None)
        return "sandbox errors 0%"


FAULT_TABLE: tuple[Fault, ...] = (
    KillChild(
        "redis-kill",
        "redis",
        "SIGKILL the redis-server child; the supervisor restarts it EMPTY on the same port "
        "(a Memorystore basic-tier restart). Undo: wait for it",
    ),
    PauseChild(
        "redis-pause", "redis", "SIGSTOP the redis-server (connections hang); undo: SIGCONT"
    ),
    SlowRedis(),
    PauseChild(
        "firestore-pause",
        "firestore-emulator",
        "SIGSTOP the emulator's process group (the JVM); undo: SIGCONT",
    ),
    KillChild(
        "functions-kill",
        "functions",
        "SIGKILL the functions server; the supervisor restarts it",
    ),
    SandboxErrors(),
)
"""Every fault, in the order ``make chaos`` runs them."""

BY_NAME: dict[str, Fault] = {f.name: f for f in FAULT_TABLE}
FAULTS: tuple[str, ...] = tuple(BY_NAME)


def describe() -> str:
    """The faults, one per line, for help texts."""
    return "\n".join(f"    {f.name:<16} {f.summary}." for f in FAULT_TABLE)


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
        if isinstance(BY_NAME.get(str(lease.get("fault"))), PauseChild)
    }


def _holder_alive(pid: int) -> bool:
    stat = procs.process_stat(pid)
    return stat is not None and stat[0] != "Z"


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
        fault = BY_NAME.get(str(lease.get("fault")))
        try:
            what = (
                "nothing to undo (unknown fault)"
                if fault is None
                else fault.undo(handle, lease.get("undo", {}), 0.0)
            )
        except (OSError, requests.RequestException) as exc:
            what = f"undo failed ({exc}); the child's own ttl still ends it"
        path.unlink(missing_ok=True)
        done.append(f"undid {lease.get('fault')} left applied ({why}): {what}")
    return done


# ---------------------------------------------------------------- applying


@dataclass(frozen=True)
class FaultWindow:
    fault: str
    started_at: float
    """time.time() when the fault was applied."""
    undone_at: float
    recovered_at: float | None
    """When the stack answered its health checks again after the undo (None: not in time)."""
    notes: str


class Undo:
    """The undo of an applied fault: call it (any number of times) for the window."""

    def __init__(
        self,
        handle: StackHandle,
        fault: Fault,
        started_at: float,
        plan: Plan,
        lease: Path | None,
        recover_sec: float,
    ) -> None:
        self.handle = handle
        self.fault = fault
        self.started_at = started_at
        self.notes = plan.notes
        self._record = plan.record
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
                    done = "; " + self.fault.undo(self.handle, self._record, self._recover_sec)
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
                self.fault.name, self.started_at, self._undone_at, recovered, self.notes
            )
            return self._window


def start_fault(handle: StackHandle, fault: str, **options: float) -> Callable[[], FaultWindow]:
    """Apply now; returns the undo, which undoes (idempotent), waits for recovery
    (bounded) and returns the window."""
    chosen = BY_NAME.get(fault)
    if chosen is None:
        raise FaultError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    parsed = parse_options(options)
    handle = handle.reload()
    reap(handle)
    plan = chosen.plan(handle, parsed)
    started = time.time()
    lease: Path | None = None
    if chosen.leased:
        # the lease first: whoever finds it can undo what follows, even if we die now
        lease = _lease_path(handle, chosen.name)
        _write_lease(lease, _lease_body(chosen.name, started, parsed.max_sec, plan.record))
    try:
        chosen.apply(handle, plan.record)
    except BaseException:
        if lease is not None:
            lease.unlink(missing_ok=True)
        raise
    return Undo(handle, chosen, started, plan, lease, parsed.recover_sec)


def _lease_body(
    fault: str, started: float, max_sec: float, undo: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "fault": fault,
        "holderPid": os.getpid(),
        "appliedAt": started,
        "undoBy": started + max_sec,
        "undo": dict(undo),
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
