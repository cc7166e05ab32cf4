"""The local stack's data stores as child processes: Google's Firestore emulator, a
private redis-server and the latency proxy in front of it, each with its readiness check;
and the emulator's wipe and a client on it.

Shared by ``pack391 serve`` and the pytest fixtures, so both run exactly the same
servers (started through :func:`stack.platform.procs.spawn`).
"""

from __future__ import annotations

import glob
import http.client
import os
import shutil
import socket
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

from stack.platform.procs import Child, StackError, Starting, free_port, owns_listener, spawn

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


EMULATOR_JAVA_OPTS_ENV = "PACK391_EMULATOR_JAVA_OPTS"
"""Extra JVM options for the Firestore emulator (space-separated), e.g. the test suite's
``-XX:TieredStopAtLevel=1 -XX:+UseSerialGC``: a short-lived emulator then spends its CPU
on requests rather than on the optimising compiler and parallel GC threads."""


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
    source = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
    child = spawn("redis-proxy", argv, log_dir, env=env, cwd=source, append=append)

    def ready() -> bool:
        if not owns_listener(child.process.pid, listen_port):
            return False
        url = f"http://127.0.0.1:{control_port}/health"
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)

    return Starting(child, ready, 15), listen_port, control_port


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
