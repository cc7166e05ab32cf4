"""Start and stop the local backends: Google's Firestore emulator and redis-server.

Shared by ``pack391 serve`` and the pytest fixtures, so both run exactly the
same servers. Every child runs in its own process group and receives SIGTERM
when its parent dies (Linux ``PR_SET_PDEATHSIG``), so nothing is left behind.

A child's output goes to ``LOG_DIR/NAME.log``, opened in append mode, and is capped:
every ``STACK_LOG_CHECK_SEC`` a file over ``STACK_LOG_MAX_BYTES`` is copied to
``NAME.log.1`` (replacing the previous one) and truncated in place (logrotate's
``copytruncate``: the child keeps writing to the same descriptor, at the new end), so
a long or loud run never fills the disk. Lines written between the copy and the
truncation are lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack import ports
from stack.constants import STACK_LOG_CHECK_SEC, STACK_LOG_MAX_BYTES

JAR_CANDIDATES = (
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
    "/usr/share/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
    "~/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
    "~/.cache/firebase/emulators/cloud-firestore-emulator-v*.jar",
)
"""Where the emulator jar usually is: the Debian/RPM package, a gcloud install,
the Firebase CLI cache."""

JAR_HELP = """No Firestore emulator jar found.
Set FIRESTORE_EMULATOR_JAR to the jar, or install Google's emulator:
  Debian/Ubuntu: apt-get install google-cloud-cli-firestore-emulator
                 (from the Google Cloud CLI apt repository)
  any gcloud:    gcloud components install cloud-firestore-emulator
  Firebase CLI:  firebase setup:emulators:firestore   (caches it under ~/.cache/firebase/emulators)
It needs Java 11 or newer on PATH."""

REDIS_HELP = """No redis-server on PATH.
Install it (Debian/Ubuntu: apt-get install redis-server), or point REDIS_URL at a running Redis."""


ACCESS_LOG_ENV = "PACK391_ACCESS_LOG"
"""Set to 1 for a per-request access log from the functions server and the sandbox (off
by default: one line per request fills the logs under load)."""


def access_log_wanted(flag: bool = False) -> bool:
    """Whether a per-request access log was asked for (``flag`` or ``PACK391_ACCESS_LOG=1``)."""
    return flag or os.environ.get(ACCESS_LOG_ENV, "").strip().lower() in ("1", "true", "yes")


EMULATOR_JAVA_OPTS_ENV = "PACK391_EMULATOR_JAVA_OPTS"
"""Extra JVM options for the Firestore emulator (space-separated), e.g. the test suite's
``-XX:TieredStopAtLevel=1 -XX:+UseSerialGC``: a short-lived emulator then spends its CPU
on requests rather than on the optimising compiler and parallel GC threads."""


class StackError(RuntimeError):
    """A backend could not be found or started; the message says what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 for a server about to start (:func:`stack.ports.free_port`:
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


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = process_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def owns_listener(pid: int, port: int) -> bool:
    """Whether the process ``pid`` (or one below it) holds the socket listening on
    ``port``: a readiness check must not take another server on a reused or raced port
    for the one it started."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for member in _process_tree(pid):
        fd_dir = f"/proc/{member}/fd"
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") in wanted:
                        return True
    return False


def find_emulator_jar() -> str:
    configured = os.environ.get("FIRESTORE_EMULATOR_JAR")
    if configured:
        if not Path(configured).is_file():
            raise StackError(f"FIRESTORE_EMULATOR_JAR={configured} is not a file.\n{JAR_HELP}")
        return configured
    for pattern in JAR_CANDIDATES:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if matches:
            return matches[-1]
    raise StackError(JAR_HELP)


def _die_with_parent() -> None:
    """In the child before exec: own process group, SIGTERM when the parent dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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


def rotated_path(log_path: Path) -> Path:
    """Where a capped log's previous contents go: ``NAME.log.1``."""
    return log_path.with_name(log_path.name + ".1")


def cap_log(log_path: Path, max_bytes: int) -> bool:
    """Rotate ``log_path`` when it is over ``max_bytes`` (copy to ``NAME.log.1``, truncate
    in place); True when it did."""
    try:
        if log_path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(log_path, rotated_path(log_path))
        os.truncate(log_path, 0)
    except OSError:
        return False
    return True


class LogCapper:
    """A daemon thread keeping the logs of running children under their cap."""

    def __init__(self, every_sec: float = STACK_LOG_CHECK_SEC) -> None:
        self.every_sec = every_sec
        self._watched: dict[Path, tuple[subprocess.Popen[bytes], int]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, log_path: Path, process: subprocess.Popen[bytes], max_bytes: int) -> None:
        with self._lock:
            self._watched[log_path] = (process, max_bytes)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="pack391-log-cap", daemon=True
                )
                self._thread.start()

    def check_once(self) -> list[Path]:
        """Rotate every watched log over its cap; forget those of exited children."""
        rotated = []
        with self._lock:
            watched = list(self._watched.items())
        for path, (process, max_bytes) in watched:
            if cap_log(path, max_bytes):
                rotated.append(path)
            if process.poll() is not None:
                with self._lock:
                    if self._watched.get(path, (None, 0))[0] is process:
                        del self._watched[path]
        return rotated

    def _loop(self) -> None:
        while True:
            time.sleep(self.every_sec)
            self.check_once()


LOG_CAPPER = LogCapper()
"""The one capper of this process's children's logs."""


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
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=_die_with_parent,
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


def start_firestore_emulator(
    project: str, log_dir: Path, rules: Path | None = None, port: int | None = None
) -> tuple[Child, str]:
    """Start the emulator; returns the child and its ``host:port``."""
    starting, host = launch_firestore_emulator(project, log_dir, rules, port)
    return starting.wait(), host


def launch_firestore_emulator(
    project: str, log_dir: Path, rules: Path | None = None, port: int | None = None
) -> tuple[Starting, str]:
    """Spawn the emulator without waiting for it: its :class:`Starting` and ``host:port``."""
    jar = find_emulator_jar()
    java = shutil.which("java")
    if java is None:
        raise StackError("java is not on PATH: the Firestore emulator needs Java 11 or newer.")
    port = port or free_port()
    argv = [
        java,
        "-Duser.language=en",
        "-Xmx1g",
        *os.environ.get(EMULATOR_JAVA_OPTS_ENV, "").split(),
        "-cp",
        jar,
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--project_id={project}",
    ]
    if rules is not None:
        argv.append(f"--rules={rules}")
    child = spawn("firestore-emulator", argv, log_dir)
    host = f"127.0.0.1:{port}"

    def ready() -> bool:
        if not owns_listener(child.process.pid, port):
            return False
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
            return bool(response.status == 200)

    return Starting(child, ready, 60), host


def start_redis(log_dir: Path, port: int | None = None, append: bool = False) -> tuple[Child, str]:
    """Start a private redis-server (no persistence: a restart on the same ``port`` comes
    back empty, as a Memorystore basic-tier restart does); returns the child and its URL."""
    starting, url = launch_redis(log_dir, port, append)
    return starting.wait(), url


def launch_redis(
    log_dir: Path, port: int | None = None, append: bool = False
) -> tuple[Starting, str]:
    """Spawn redis-server without waiting for it: its :class:`Starting` and URL."""
    server = shutil.which("redis-server")
    if server is None:
        raise StackError(REDIS_HELP)
    port = port or free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="pack391-redis-"))
    argv = [
        server,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
        "--maxmemory-policy",
        "noeviction",
    ]
    child = spawn("redis", argv, log_dir, append=append)
    child.cleanup.append(data_dir)

    def ready() -> bool:
        if not owns_listener(child.process.pid, port):
            return False
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    return Starting(child, ready, 15), f"redis://127.0.0.1:{port}/0"


def start_latency_proxy(
    log_dir: Path,
    upstream_port: int,
    listen_port: int | None = None,
    control_port: int | None = None,
    append: bool = False,
) -> tuple[Child, int, int]:
    """Start :mod:`stack.latency_proxy` in front of ``127.0.0.1:upstream_port``; returns
    the child, the port clients use and the control port (HTTP)."""
    starting, listen, control = launch_latency_proxy(
        log_dir, upstream_port, listen_port, control_port, append
    )
    return starting.wait(), listen, control


def launch_latency_proxy(
    log_dir: Path,
    upstream_port: int,
    listen_port: int | None = None,
    control_port: int | None = None,
    append: bool = False,
) -> tuple[Starting, int, int]:
    """Spawn the latency proxy without waiting for it (it connects upstream per client
    connection, so Redis may still be starting): its :class:`Starting` and ports."""
    listen_port = listen_port or free_port()
    control_port = control_port or free_port()
    argv = [
        sys.executable, "-m", "stack.latency_proxy",
        "--listen-port", str(listen_port),
        "--upstream", f"127.0.0.1:{upstream_port}",
        "--control-port", str(control_port),
    ]  # fmt: skip
    source = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
    child = spawn("redis-proxy", argv, log_dir, env=env, cwd=source, append=append)

    def ready() -> bool:
        if not owns_listener(child.process.pid, listen_port):
            return False
        url = f"http://127.0.0.1:{control_port}/health"
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    return Starting(child, ready, 15), listen_port, control_port


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


_WIPE_CONNECTIONS: dict[str, http.client.HTTPConnection] = {}
_WIPE_LOCK = threading.Lock()


def wipe_firestore(host: str, project: str) -> None:
    """Delete every document in the emulator (its own endpoint; fast). Over one kept-alive
    connection per emulator: the test suite wipes before each of ~1,400 tests, and a new
    connection per wipe (urllib's) cost 11 ms against 3."""
    path = f"/emulator/v1/projects/{project}/databases/(default)/documents"
    with _WIPE_LOCK:
        for attempt in range(2):
            conn = _WIPE_CONNECTIONS.get(host)
            if conn is None:
                conn = _WIPE_CONNECTIONS[host] = http.client.HTTPConnection(host, timeout=30)
            try:
                conn.request("DELETE", path)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()  # a restarted or replaced emulator: connect again, once
                del _WIPE_CONNECTIONS[host]
                if attempt:
                    raise
                continue
            if response.status != 200:
                raise StackError(f"wiping the emulator at {host}: HTTP {response.status}")
            return


def forget_wipe_connection(host: str) -> None:
    """Close the kept-alive wipe connection to ``host`` (its emulator is stopping)."""
    with _WIPE_LOCK:
        conn = _WIPE_CONNECTIONS.pop(host, None)
    if conn is not None:
        conn.close()


def firestore_client(host: str, project: str) -> Any:
    """A Firestore client on the emulator at ``host``, leaving ``FIRESTORE_EMULATOR_HOST``
    alone: the process's own clients (a test session's, the functions under test) keep
    their emulator, and no other thread ever sees a swapped environment.

    The client reads ``FIRESTORE_EMULATOR_HOST`` once, in its constructor, into
    ``_emulator_host``, and uses it only when it first opens its channel (an insecure one,
    with the emulator's ``Bearer owner``): setting it on this one client before any call
    is what the environment variable would do, for this client alone."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    client = firestore.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": host},
    )
    from stack.sdk_private import set_emulator_host

    set_emulator_host(client, host)
    return client
