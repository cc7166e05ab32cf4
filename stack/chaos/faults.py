"""Faults on demand against the running local stack (``pack391 chaos``): a table of
objects that apply and undo.

Each fault is one object of :data:`FAULT_TABLE` (its kinds: :mod:`stack.chaos.fault_kinds`),
with the same three steps:

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
3. redis-slow, sandbox-errors and cloudrun-slow are set with a ttl in the child itself
   (the proxy and the sandbox revert to normal by themselves at the deadline).
4. The supervisor SIGCONTs a child it finds stopped with no lease for
   ``STOPPED_GRACE_SEC`` (a stray ``kill -STOP``), and wakes a stopped child before
   stopping it on Ctrl-C.

Options (floats): ``delay_ms`` (redis-slow: 200; cloudrun-slow: 30000), ``error_pct``
(sandbox-errors), ``max_sec`` (the lease's bound, default 300 s; :func:`inject` sets
duration + 30 s) and ``recover_sec`` (how long the undo waits for the stack's health
checks, default 60 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from stack.chaos.fault_kinds import (
    LEASE_GRACE_SEC,
    STOPPED_GRACE_SEC,
    Fault,
    FaultError,
    FaultOptions,
    KillAndHold,
    KillChild,
    PauseChild,
    Plan,
    SandboxErrors,
    SlowCloudRun,
    SlowRedis,
    parse_options,
)
from stack.platform import procs
from stack.platform.handle import (
    StackHandle,
    health,
    wait_healthy,
)

__all__ = [
    "BY_NAME",
    "CLUSTER_FAULTS",
    "FAULTS",
    "FAULT_TABLE",
    "LEASE_GRACE_SEC",
    "STOPPED_GRACE_SEC",
    "FaultError",
    "FaultOptions",
    "FaultWindow",
    "Undo",
    "describe",
    "held_children",
    "inject",
    "leased_pids",
    "parse_options",
    "reap",
    "start_fault",
]
"""What the CLI, the supervisor, the chaos runner and the tests use; the kinds of fault and
their options are :mod:`stack.chaos.fault_kinds`'."""

FAULT_TABLE: tuple[Fault, ...] = (
    KillAndHold(
        "redis-kill",
        "redis",
        "SIGKILL the redis-server child and keep it down while the fault is on (a "
        "Memorystore basic-tier instance is gone for the whole of its restart, not the "
        "0.2 s a local supervisor takes). Undo: release it; the supervisor restarts it "
        "EMPTY on the same port",
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
    SlowCloudRun(),
    KillAndHold(
        "redis-primary-kill",
        "redis-2",
        "SIGKILL one primary of the Redis Cluster and keep it down while the fault is on "
        "(its slots go dark; once the others agree it failed, 2 s, the whole cluster "
        "answers CLUSTERDOWN). Undo: the supervisor restarts it, it rejoins with its slots",
        cluster=True,
    ),
)
"""Every fault, in the order ``make chaos`` runs them (but the cluster-only ones:
:data:`CLUSTER_FAULTS`)."""

BY_NAME: dict[str, Fault] = {f.name: f for f in FAULT_TABLE}
FAULTS: tuple[str, ...] = tuple(BY_NAME)
CLUSTER_FAULTS: tuple[str, ...] = tuple(
    f.name for f in FAULT_TABLE if isinstance(f, KillChild) and f.cluster
)
"""Faults only a stack with a Redis Cluster (``pack391 serve --redis-cluster``) takes:
not in ``make chaos``'s default run (:data:`stack.chaos.config.ALL_FAULTS`)."""


def describe() -> str:
    """The faults, one per line, for help texts."""
    return "\n".join(f"    {f.name:<18} {f.summary}." for f in FAULT_TABLE)


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


def held_children(faults_dir: Path) -> set[str]:
    """Children a live lease keeps down (the supervisor does not restart those)."""
    return {
        str(lease["undo"]["child"])
        for _, lease in _leases(faults_dir)
        if isinstance(BY_NAME.get(str(lease.get("fault"))), KillAndHold)
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
                    if isinstance(self.fault, KillAndHold):  # released: now it restarts
                        done += "; " + self.fault.restarted(
                            self.handle, self._record, self._recover_sec
                        )
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
