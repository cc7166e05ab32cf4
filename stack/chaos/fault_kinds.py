"""The kinds of fault of :mod:`stack.chaos.faults`' table: each plans (checks it applies
to this stack and writes down a JSON record), applies, and undoes from the record alone;
their options, and the error a fault that cannot be applied raises."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import requests

from stack import latency_proxy
from stack.platform import procs
from stack.platform.handle import DEFAULT_RECOVER_SEC, StackHandle, cluster_nodes

DEFAULT_DELAY_MS = 200.0
"""redis-slow: what each Redis command waits in the latency proxy."""
DEFAULT_CLOUD_RUN_DELAY_MS = 30_000.0
"""cloudrun-slow: what each call to the local Cloud Run stand-in waits: a stalled API, past
any caller's own timeout (the local scaler's hook gives up after 2 s), so what is tested
is that the callers stop waiting, not that they wait a little longer."""
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
    delay_ms: float | None = None
    """None: the fault's own default (:data:`DEFAULT_DELAY_MS`,
    :data:`DEFAULT_CLOUD_RUN_DELAY_MS`)."""
    error_pct: float = DEFAULT_ERROR_PCT

    def delay_or(self, default_ms: float) -> float:
        """``delay_ms`` as given, else the fault's ``default_ms``."""
        return default_ms if self.delay_ms is None else self.delay_ms


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
    if parsed.delay_ms is not None and parsed.delay_ms < 0:
        raise FaultError("delay_ms must be >= 0")
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


def _needs_cluster(fault: str, child: str, cluster: bool, handle: StackHandle) -> None:
    """FaultError when the fault is a cluster node's and this stack runs no cluster."""
    if cluster and child not in cluster_nodes(handle):
        raise FaultError(
            f"{fault}: this stack runs no Redis Cluster of its own (no {child}): "
            "start it with `pack391 serve --redis-cluster` (or PACK391_REDIS_CLUSTER=1)"
        )


@dataclass(frozen=True)
class KillChild:
    """SIGKILL a child; the supervisor restarts it. Undo: wait for the restart.
    ``cluster``: the child is a node of the stack's Redis Cluster (``--redis-cluster``),
    and a stack without one refuses the fault."""

    name: str
    child: str
    summary: str
    cluster: bool = False
    leased: ClassVar[bool] = False

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        _needs_cluster(self.name, self.child, self.cluster, handle)
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
class KillAndHold(KillChild):
    """SIGKILL a child and keep it down while the fault is on: the supervisor does not
    restart a child a live lease holds (:func:`held_children`), as a managed Redis node
    being replaced stays gone for seconds to minutes, not the instant a local supervisor
    takes. Undo: release it; the supervisor restarts it, and the undo waits for the
    stack's health (for a cluster: every node answers ``cluster_state:ok``).
    ``cluster``: the child is a node of the stack's Redis Cluster (``--redis-cluster``),
    and a stack without one refuses the fault."""

    leased: ClassVar[bool] = True

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        killed = super().plan(handle, options)
        return Plan(f"{killed.notes} and held down", {**killed.record, "child": self.child})

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        return f"released {record['child']}: the supervisor restarts it"

    def restarted(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        """Once released (its lease gone): wait for the supervisor to record the new child
        (a health check alone can pass before the stack's state file names it)."""
        return super().undo(handle, record, recover_sec)


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
        delay_ms = options.delay_or(DEFAULT_DELAY_MS)
        return Plan(
            f"Redis proxy delay {delay_ms:.0f} ms per command",
            {"control": control, "delayMs": delay_ms, "ttlSec": options.max_sec},
        )

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        latency_proxy.set_delay(str(record["control"]), record["delayMs"], record["ttlSec"])

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        latency_proxy.set_delay(str(record["control"]), 0)
        return "proxy delay 0"


def _sandbox_control(url: str, path: str, body: dict[str, Any]) -> None:
    """POST a setting to the sandbox's control endpoint ``path`` (it sets every worker)."""
    response = requests.post(f"{url}{path}", json=body, timeout=5)
    response.raise_for_status()


def _sandbox_errors(url: str, pct: float, ttl_sec: float | None) -> None:
    _sandbox_control(url, "/__faults", {"errorPct": pct, "ttlSec": ttl_sec})


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


def _cloud_run_stall(url: str, delay_ms: float, ttl_sec: float | None) -> None:
    _sandbox_control(url, "/__cloudrun", {"delayMs": delay_ms, "ttlSec": ttl_sec})


@dataclass(frozen=True)
class SlowCloudRun:
    """The Cloud Run Admin API answers slowly. On the local stack it is the sandbox's
    resize hook (the local scaler POSTs each instance change there: a manual scale, the
    scale guard's actions), held ``delay_ms`` per call while the fault is on, with a ttl
    in the sandbox itself (:class:`stack.sandbox.control.CloudRunStall`). Undo: delay 0,
    which answers the held calls at once. The deploy calls' local traffic split is kept
    in Redis (:class:`functions.deploy_guard.local.LocalTraffic`), with no Cloud Run hop
    to stall."""

    name: str = "cloudrun-slow"
    summary: str = (
        "the local Cloud Run API (the sandbox's resize hook) answers each instance change "
        "after delay_ms (30000)"
    )
    leased: ClassVar[bool] = True

    def plan(self, handle: StackHandle, options: FaultOptions) -> Plan:
        delay_ms = options.delay_or(DEFAULT_CLOUD_RUN_DELAY_MS)
        return Plan(
            f"Cloud Run stand-in (sandbox resize hook) answers after {delay_ms:.0f} ms",
            {"url": handle.sandbox_url, "delayMs": delay_ms, "ttlSec": options.max_sec},
        )

    def apply(self, handle: StackHandle, record: Mapping[str, Any]) -> None:
        _cloud_run_stall(str(record["url"]), float(record["delayMs"]), record["ttlSec"])

    def undo(self, handle: StackHandle, record: Mapping[str, Any], recover_sec: float) -> str:
        _cloud_run_stall(str(record["url"]), 0, None)
        return "Cloud Run stand-in delay 0 (held calls answered)"
