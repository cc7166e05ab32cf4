"""The sandbox's worker processes: one parent, ``--workers N`` servers on one port.

The parent (the pid its supervisor knows) checks the port is free, then forks the
workers and serves nothing itself. Each worker binds the public port with
``SO_REUSEPORT`` (the kernel spreads connections between them) and its own control
socket, ``<control dir>/w<i>.sock``, through which the others reach it
(:mod:`stack.sandbox.control`). The parent forwards SIGTERM and SIGINT to the workers and
exits when they are gone (0). A worker that dies on its own is not restarted: the parent
stops the others and exits 1, and its supervisor restarts the whole sandbox, so no
worker ever serves with state the others have moved past (instances, faults). Each
worker is in the parent's process group (a group signal reaches all of them) and gets
SIGTERM if the parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("pack391.sandbox")

WORKERS_ENV = "PACK391_SANDBOX_WORKERS"
"""The default of ``--workers`` (else one per core)."""
STOP_GRACE_SEC = 8.0
"""After forwarding SIGTERM, the parent waits this long before it SIGKILLs a worker."""
PEER_TIMEOUT_SEC = 2.0
"""A control call to another worker answers within this, or that worker is unavailable."""


def default_workers() -> int:
    """``PACK391_SANDBOX_WORKERS``, else ``os.cpu_count()``."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    return max(1, int(raw)) if raw else max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class WorkerSlot:
    """Which worker this process is (``index`` of ``count``) and where its peers listen."""

    index: int
    count: int
    control_dir: str

    def socket_path(self, index: int) -> str:
        return str(Path(self.control_dir) / f"w{index}.sock")

    @property
    def reporter(self) -> bool:
        """Worker 0 pushes every service's merged sample."""
        return self.index == 0


class PeerUnavailable(Exception):
    """Another worker did not answer a control call."""


@dataclass
class Peers:
    """The other workers' control sockets, over HTTP (a session each, made on the loop)."""

    slot: WorkerSlot
    _sessions: dict[int, aiohttp.ClientSession] = field(default_factory=dict)

    @property
    def others(self) -> list[int]:
        return [i for i in range(self.slot.count) if i != self.slot.index]

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=self.slot.socket_path(index))
            timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_SEC)
            session = self._sessions[index] = aiohttp.ClientSession(
                connector=connector, timeout=timeout
            )
        return session

    async def call(self, index: int, method: str, path: str, body: Any = None) -> Any:
        """Worker ``index``'s JSON answer (:class:`PeerUnavailable` when it gives none)."""
        try:
            async with self._session(index).request(
                method, f"http://worker{index}{path}", json=body
            ) as answer:
                if answer.status != 200:
                    raise PeerUnavailable(f"worker {index}: {answer.status} on {path}")
                return await answer.json()
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise PeerUnavailable(f"worker {index}: {type(exc).__name__} on {path}") from exc

    async def all_others(self, method: str, path: str, body: Any = None) -> list[Any]:
        """Every other worker's answer, in index order (:class:`PeerUnavailable` when one
        gives none)."""
        return list(await asyncio.gather(*(self.call(i, method, path, body) for i in self.others)))

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


# ------------------------------------------------------------------ the parent


def claim_port(host: str, port: int) -> int:
    """The port the workers are to share: ``port``, checked free (``OSError`` when a
    server holds it, as a single process's bind fails), or a free one for 0. With
    ``SO_REUSEPORT`` a stale server on the port would otherwise take a share of it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def _as_worker(parent: int) -> None:
    """In a forked worker: default signal handling, SIGTERM when the parent dies."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _run_worker(parent: int, index: int, serve: Callable[[int], None]) -> None:
    code = 1
    try:
        _as_worker(parent)
        serve(index)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("sandbox worker %d failed", index)
    finally:
        logging.shutdown()
        os._exit(code)


def supervise(count: int, serve: Callable[[int], None]) -> int:
    """Fork ``count`` workers, each running ``serve(index)``; forward SIGTERM/SIGINT to
    them; return when all are gone: 0, or 1 when one died unasked (the others stopped)."""
    parent = os.getpid()
    workers: dict[int, int] = {}  # pid -> index
    stopping: list[float] = []  # when the stop began
    failed = False

    def stop_all(sig: int = signal.SIGTERM) -> None:
        if not stopping:
            stopping.append(time.monotonic())
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def on_signal(signum: int, frame: Any) -> None:
        if os.getpid() != parent:  # a worker between fork and _as_worker
            os._exit(128 + signum)
        log.info("sandbox: %s, stopping %d workers", signal.Signals(signum).name, len(workers))
        stop_all()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            _run_worker(parent, index, serve)
        workers[pid] = index
        if stopping:  # a signal came while forking
            stop_all()
    log.info("sandbox: %d workers, pids %s", count, sorted(workers))
    while workers:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if stopping and time.monotonic() - stopping[0] > STOP_GRACE_SEC:
                log.warning("sandbox: workers %s still up: SIGKILL", sorted(workers))
                stop_all(signal.SIGKILL)
            time.sleep(0.1)
            continue
        index = workers.pop(pid, -1)
        if not stopping:
            failed = True
            log.error(
                "sandbox worker %d (pid %d) %s: stopping the others (the supervisor restarts "
                "the sandbox)", index, pid, _exit_text(status),
            )  # fmt: skip
            stop_all()
    return 1 if failed else 0


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"


@contextlib.contextmanager
def control_dir(port: int) -> Any:
    """A private directory for the workers' control sockets (removed after)."""
    path = tempfile.mkdtemp(prefix=f"pack391-sandbox-{port}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
