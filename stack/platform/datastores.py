"""The local stack's data stores as child processes: Google's Firestore emulator, a
private redis-server and the latency proxy in front of it (or a private Redis Cluster of
three primaries), each with its readiness check; and the emulator's wipe and a client on it.

Shared by ``pack391 serve`` and the pytest fixtures, so both run exactly the same
servers (started through :func:`stack.platform.procs.spawn`).
"""

from __future__ import annotations

import glob
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from stack.platform.procs import (
    Child,
    StackError,
    Starting,
    free_port,
    owns_listener,
    program_argv,
    spawn,
)

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

REDIS_CLI_HELP = """No redis-cli on PATH: creating a Redis Cluster needs it.
Install it (Debian/Ubuntu: apt-get install redis-tools; redis-server brings it too)."""


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
        return owns_listener(child.process.pid, port) and _ping(port)

    return Starting(child, ready, 15), f"redis://127.0.0.1:{port}/0"


def _ping(port: int, timeout: float = 0.5) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


# ---------------------------------------------------------------- Redis Cluster

CLUSTER_NODE_TIMEOUT_MS = 2000
"""``cluster-node-timeout``: a primary silent this long is failing (its slots go dark)."""
CLUSTER_READY_SEC = 30.0
"""How long a new cluster may take to say ``cluster_state:ok`` on every node."""


def cluster_info(port: int, timeout: float = 1.0, host: str = "127.0.0.1") -> dict[str, str]:
    """``CLUSTER INFO`` of the node on ``host:port`` as a dict (OSError: no answer)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"CLUSTER INFO\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("connection closed")
            data += chunk
        header, _, body = data.partition(b"\r\n")
        if not header.startswith(b"$"):
            raise OSError(f"CLUSTER INFO: {header.decode(errors='replace')}")
        size = int(header[1:])
        while len(body) < size:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("connection closed")
            body += chunk
    rows = body[:size].decode().splitlines()
    return dict(row.split(":", 1) for row in rows if ":" in row)


def cluster_ok(ports: list[int], timeout: float = 1.0) -> bool:
    """Whether every node says ``cluster_state:ok`` (False when one does not answer)."""
    try:
        return all(cluster_info(p, timeout).get("cluster_state") == "ok" for p in ports)
    except OSError:
        return False


def wait_cluster_ok(ports: list[int], timeout_sec: float = CLUSTER_READY_SEC) -> None:
    """Wait until every node says ``cluster_state:ok`` (StackError after ``timeout_sec``)."""
    deadline = time.monotonic() + timeout_sec
    while not cluster_ok(ports):
        if time.monotonic() >= deadline:
            states = {}
            for port in ports:
                try:
                    states[port] = cluster_info(port).get("cluster_state", "?")
                except OSError as exc:
                    states[port] = f"no answer ({exc})"
            raise StackError(f"the Redis Cluster is not ok after {timeout_sec:.0f}s: {states}")
        time.sleep(0.1)


def _argv_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def launch_redis_cluster_node(
    log_dir: Path, name: str, port: int | None = None
) -> tuple[Starting, int]:
    """Spawn one cluster-enabled redis-server (no persistence; its cluster state in
    ``nodes.conf`` of its own data directory, which its child removes when stopped):
    its :class:`Starting` (ready: answers PING) and port."""
    server = shutil.which("redis-server")
    if server is None:
        raise StackError(REDIS_HELP)
    port = port or free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"pack391-{name}-"))
    argv = [
        server,
        "--bind", "127.0.0.1",
        "--port", str(port),
        # the bus port given, not port + 10000 (beyond 65535 for a high ephemeral port)
        "--cluster-port", str(free_port()),
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
        "--save", "",
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",
        "--dir", str(data_dir),
    ]  # fmt: skip
    return relaunch_redis_cluster_node(log_dir, name, argv), port


def relaunch_redis_cluster_node(
    log_dir: Path, name: str, argv: list[str], append: bool = False
) -> Starting:
    """Spawn a cluster node with ``argv`` (a stopped node's, :attr:`subprocess.Popen.args`):
    on the same ports and data directory it rejoins the cluster with its slots, empty
    (as a Memorystore node replacement). Its child removes the data directory when stopped
    (the supervisor keeps it for the restart)."""
    port = int(_argv_value(argv, "--port"))
    data_dir = Path(_argv_value(argv, "--dir"))
    data_dir.mkdir(parents=True, exist_ok=True)
    child = spawn(name, argv, log_dir, append=append)
    child.cleanup.append(data_dir)

    def ready() -> bool:
        return owns_listener(child.process.pid, port) and _ping(port)

    return Starting(child, ready, 15)


def node_argv(child: Child) -> list[str]:
    """The argv a cluster node was started with (to start it again, the same)."""
    return program_argv(child.process.args)  # type: ignore[arg-type]


def node_port(child: Child) -> int:
    """The port of a cluster node (from its argv)."""
    return int(_argv_value(node_argv(child), "--port"))


def start_redis_cluster(log_dir: Path, primaries: int = 3) -> tuple[list[Child], str]:
    """Start a private Redis Cluster of ``primaries`` primaries and no replicas (children
    ``redis-1``.. on free ports), create it with ``redis-cli --cluster create`` and wait
    for ``cluster_state:ok`` on every node; the children and the cluster URL
    (``redis+cluster://127.0.0.1:PORT`` of the first node). StackError, with redis-cli's
    output, when the cluster cannot be created."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise StackError(REDIS_CLI_HELP)
    if primaries < 3:
        raise StackError(f"a Redis Cluster needs at least 3 primaries, not {primaries}")
    startings: list[Starting] = []
    ports: list[int] = []
    try:
        for index in range(1, primaries + 1):
            starting, port = launch_redis_cluster_node(log_dir, f"redis-{index}", None)
            startings.append(starting)
            ports.append(port)
        children = [starting.wait() for starting in startings]
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        if create.returncode != 0:
            output = (create.stdout + create.stderr).strip()
            raise StackError(f"redis-cli --cluster create failed ({create.returncode}):\n{output}")
        wait_cluster_ok(ports)
    except BaseException:
        for starting in reversed(startings):
            starting.child.stop()
        raise
    return children, f"redis+cluster://127.0.0.1:{ports[0]}"


def flush_cluster(url: str) -> None:
    """FLUSHALL on every primary of the cluster at ``url`` (``redis+cluster://``, or any
    node's ``redis://``): a test's clean start. Over a plain connection to each node."""
    import redis

    from shared.redis import cluster_url

    node_url = cluster_url(url) or url
    with redis.Redis.from_url(node_url, socket_timeout=5, decode_responses=True) as node:
        nodes: Any = node.execute_command("CLUSTER NODES")
    # redis-py parses CLUSTER NODES into {"host:port": {"flags": ..., ...}}
    for address, info in nodes.items():
        if "master" in str(info.get("flags", "")) and "fail" not in str(info.get("flags", "")):
            host, _, port = address.partition("@")[0].rpartition(":")
            with redis.Redis(host=host or "127.0.0.1", port=int(port), socket_timeout=5) as primary:
                primary.flushall()


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
