"""Start, watch and stop the local stack's child processes.

Shared by ``pack391 serve`` and the pytest fixtures, so both run exactly the same
servers. Every child runs in its own process group and receives SIGTERM when its parent
dies (Linux ``PR_SET_PDEATHSIG``), so nothing is left behind. A child's output goes to
``LOG_DIR/NAME.log``, kept under its cap by :mod:`stack.platform.logs`.

A child is ready when a listener it holds answers (:func:`owns_listener`): the
backends' own starts and readiness checks are in :mod:`stack.platform.datastores`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stack.constants import STACK_LOG_MAX_BYTES
from stack.platform import ports
from stack.platform.logs import LOG_CAPPER, rotated_path

ACCESS_LOG_ENV = "PACK391_ACCESS_LOG"
"""Set to 1 for a per-request access log from the functions server and the sandbox (off
by default: one line per request fills the logs under load)."""


def access_log_wanted(flag: bool = False) -> bool:
    """Whether a per-request access log was asked for (``flag`` or ``PACK391_ACCESS_LOG=1``)."""
    return flag or os.environ.get(ACCESS_LOG_ENV, "").strip().lower() in ("1", "true", "yes")


class StackError(RuntimeError):
    """A backend could not be found or started; the message says what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 for a server about to start (:func:`stack.platform.ports.free_port`:
    from ``PACK391_PORT_RANGE`` when set, else the kernel's choice)."""
    return ports.free_port()


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from ``/proc/net/tcp{,6}``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    # local_address is HEXIP:HEXPORT; state 0A is LISTEN; inode is field 9
                    listening = len(fields) > 9 and fields[3] == "0A"
                    if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(fields[9])
        except OSError:
            continue
    return found


def children_map() -> dict[int, list[int]]:
    """Parent pid -> its live children's pids (one pass over ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = process_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry))
    return children


def process_tree(
    pid: int, children: dict[int, list[int]] | None = None, stop_at: Collection[int] = ()
) -> list[int]:
    """``pid`` and every live process below it (not descending into ``stop_at``)."""
    children = children_map() if children is None else children
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(c for c in children.get(current, []) if c not in stop_at)
    return tree


def owns_listener(pid: int, port: int) -> bool:
    """Whether the process ``pid`` (or one below it) holds the socket listening on
    ``port``: a readiness check must not take another server on a reused or raced port
    for the one it started."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for member in process_tree(pid):
        fd_dir = f"/proc/{member}/fd"
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in wanted:
                        return True
    return False


SETPRIV = shutil.which("setpriv")
"""util-linux's ``setpriv``: sets the parent-death signal and execs the child's program."""


def _dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when the thread that started it exits:
    through ``setpriv --pdeathsig TERM`` (which execs it: same pid). Not with a
    ``preexec_fn``: that makes Python fork() (not vfork()) and run the fork handlers and
    Python code in the child, and a process with live gRPC channels (the tests', the
    stack's tools) then lost children at start (exit -6, gRPC's poller failing in the
    child). Without ``setpriv`` the child does not die with its parent."""
    return [*_PDEATHSIG, *argv] if SETPRIV else list(argv)


_PDEATHSIG = [str(SETPRIV), "--pdeathsig", "TERM", "--"]


def program_argv(args: Sequence[str]) -> list[str]:
    """A child's own argv, without the ``setpriv`` that started it (to start it again)."""
    args = [str(a) for a in args]
    return args[len(_PDEATHSIG) :] if args[: len(_PDEATHSIG)] == _PDEATHSIG else args


@dataclass
class Child:
    """A started child process and what is needed to stop it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    cleanup: list[Path] = field(default_factory=list)

    def stop(self, timeout_sec: float = 5.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # A paused (SIGSTOP, `pack391 chaos ...-pause`) child would hold SIGTERM
                # pending until the timeout: wake it first.
                os.killpg(self.process.pid, signal.SIGCONT)
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_sec)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout_sec)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of its output (reaching into ``NAME.log.1`` after a rotation)."""
        found: list[str] = []
        for path in (self.log_path, rotated_path(self.log_path)):
            try:
                found = path.read_text(errors="replace").splitlines() + found
            except OSError:
                continue
            if len(found) >= lines:
                break
        return "\n".join(found[-lines:])


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
    log_max_bytes: int = STACK_LOG_MAX_BYTES,
) -> Child:
    """Start ``argv`` as a child (own process group, dies with us), output to
    ``log_dir/NAME.log`` (appended to on a restart, so the crash stays readable), capped
    at ``log_max_bytes`` (see the module's doc).

    Call it from the thread that lives as long as the child should: Linux sends the
    parent-death signal when the *thread* that forked the child exits."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    if not append:
        log_path.write_bytes(b"")
    # always O_APPEND: after a truncation the child's next write lands at the new end
    with open(log_path, "ab") as log_file:
        if append:
            log_file.write(f"\n---- restarted at {time.strftime('%H:%M:%S')} ----\n".encode())
            log_file.flush()
        process = subprocess.Popen(
            _dying_with_parent(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # own process group (setsid), as before
        )
    LOG_CAPPER.watch(log_path, process, log_max_bytes)
    return Child(name, process, log_path)


@dataclass
class Starting:
    """A child that was spawned and is not known to be ready yet: :meth:`wait` for it.
    Several can start at once (the stack spawns its backends together and then waits for
    each), since most of a start is the child's own work."""

    child: Child
    ready: Callable[[], bool]
    timeout_sec: float

    def wait(self) -> Child:
        _wait_until(self.child, self.ready, self.timeout_sec)
        return self.child


def _wait_until(child: Child, ready: object, timeout_sec: float) -> None:
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StackError(
                f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}"
            )
        with contextlib.suppress(OSError):  # not listening yet
            if callable(ready) and ready():
                return
        time.sleep(0.05)
    child.stop()
    raise StackError(
        f"{child.name} did not become ready in {timeout_sec:.0f}s:\n{child.log_tail()}"
    )


def wait_http(child: Child, url: str, timeout_sec: float = 60.0) -> None:
    """Wait until ``url`` answers 200 from a listener the child holds (StackError when the
    child exits or time runs out)."""
    port = urllib.parse.urlsplit(url).port

    def ready() -> bool:
        if port is not None and not owns_listener(child.process.pid, port):
            return False
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    _wait_until(child, ready, timeout_sec)


def process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of a live process from ``/proc`` (state ``T``: stopped), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])
