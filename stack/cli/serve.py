"""``pack391 serve``: the local stack's supervisor. It starts the Firestore emulator,
Redis behind its latency proxy (or, with ``--redis-cluster``, a Redis Cluster of three
primaries), the Firebase Auth emulator (unless ``--no-auth-emulator``), the functions
server, the load-test sandbox and the local Cloud Scheduler, restarts a child that dies,
and stops them all on exit."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from shared import thresholds as t
from shared.config import FUNCTIONS_REGION, project_id
from stack.chaos import faults
from stack.cli import caller, loadtest
from stack.platform import auth_emulator, datastores, procs
from stack.platform import handle as stack_handle
from stack.platform.scheduler import start_scheduler
from stack.platform.supervisor import Supervisor

SOURCE_DIR = Path(__file__).resolve().parents[2]
"""The functions source directory (where main.py and firebase.json are)."""

AUTH_EMULATOR_HOST = "127.0.0.1:9099"
"""FIREBASE_AUTH_EMULATOR_HOST when the stack starts no Auth emulator (``--no-auth-emulator``;
unless the environment sets one), so firebase-admin still accepts emulator tokens (``pack391
token``): verifying them needs no running emulator, and nothing listens there. With the
emulator, the variable names it."""


REDIS_CLUSTER_ENV = "PACK391_REDIS_CLUSTER"
"""Set to 1 for ``--redis-cluster`` (``PACK391_REDIS_CLUSTER=1 make run``)."""


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the local stack in the foreground (Ctrl-C stops it)")
    serve.add_argument("--log-dir", default=str(SOURCE_DIR / ".local" / "logs"), help="child logs")
    serve.add_argument(
        "--redis-cluster",
        action="store_true",
        help="a Redis Cluster of three primaries (children redis-1..3; no latency proxy, so "
        f"no redis-slow) instead of one redis-server; {REDIS_CLUSTER_ENV}=1 does the same",
    )
    serve.add_argument(
        "--no-auth-emulator",
        dest="auth_emulator",
        action="store_false",
        help="start no Firebase Auth emulator (firebase-tools; about 10 s of a core at start): "
        "`pack391 token` tokens still work, the ops page's sign-in and `pack391 grant` do not",
    )
    serve.set_defaults(func=cmd_serve)


def cluster_wanted(flag: bool = False) -> bool:
    """Whether a Redis Cluster was asked for (``flag`` or ``PACK391_REDIS_CLUSTER=1``)."""
    return flag or os.environ.get(REDIS_CLUSTER_ENV, "").strip().lower() in ("1", "true", "yes")


SUPERVISE_EVERY_SEC = 0.1
"""How often the supervisor looks at its children (a dead one is restarted within this)."""
LEASE_CHECK_EVERY_SEC = 0.5
"""How often it looks at applied faults' leases and at stopped children."""


class Stack:
    """The supervisor: starts the children, restarts one that dies (Redis empty, on the
    same port; the functions server, the sandbox and the Redis latency proxy on theirs),
    writes the state file ``pack391 chaos`` reads, and stops them all on exit.

    A Firestore emulator death stops the stack: it keeps its data only in memory, so an
    empty emulator would silently break every test of what was stored.

    Its children are a :class:`stack.platform.supervisor.Supervisor`'s, started and
    restarted from the thread that runs :meth:`supervise` (the main thread): their
    parent-death signal follows the forking thread."""

    def __init__(
        self,
        log_dir: Path,
        state_path: Path | None = None,
        redis_cluster: bool = False,
        auth_emulator: bool = True,
    ) -> None:
        self.log_dir = log_dir
        self.redis_cluster = redis_cluster
        self.auth_emulator = auth_emulator
        self.state_path = state_path or stack_handle.default_state_path()
        self.children = Supervisor(log_dir)
        self.scheduler: Any = None
        self.stopping = threading.Event()
        self.info: dict[str, Any] = {}
        self._next_lease_check = 0.0

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.children.stop_all()
        self._remove_state()

    def start(self) -> dict[str, str]:
        project = project_id()
        region = FUNCTIONS_REGION.value
        env = dict(os.environ)
        # Nothing stands in front of the local server: the TCP peer is the client.
        env.setdefault("PACK391_FRONT_DOOR", "direct")
        # The local stack shares two cores with its load generator: a 50 ms Redis budget
        # (production's, for Memorystore a millisecond away) turns a busy moment into a
        # stray fail-open decision. Locally the budget is 250 ms unless set.
        env.setdefault("PACK391_REDIS_TIMEOUT_MS", "250")
        # the spec's seven services (stack.platform.world.DEPLOY_SERVICES_ENV, without its imports)
        env.setdefault("PACK391_DEPLOY_SERVICES", ",".join(t.SCALING_SERVICE_INSTANCES))
        port = caller.local_port()
        sandbox_port = loadtest.sandbox_port()
        for wanted, setting in ((port, "PACK391_PORT"), (sandbox_port, "PACK391_SANDBOX_PORT")):
            if not _port_free(wanted):
                raise procs.StackError(f"port {wanted} is in use: set {setting} to a free port")
        # the pre-deploy gate `api_endpoints` probes the app the local stack serves
        env.setdefault("PACK391_DEPLOY_PROBE_URLS", f"http://127.0.0.1:{sandbox_port}/__health")
        faults_dir = stack_handle.faults_dir_for(self.state_path)
        for stale in faults_dir.glob("*.json"):  # a previous stack's leases mean nothing now
            stale.unlink(missing_ok=True)

        # Every child is spawned first and waited for after: their starts (a JVM, the
        # Auth emulator's ~10 s, two Python servers importing the bundle) overlap instead
        # of adding up.
        waits: list[procs.Starting] = []
        auth_host = (
            _launch_auth_emulator(self.children, project, waits) if self.auth_emulator else None
        )
        firestore_host = os.environ.get("FIRESTORE_EMULATOR_HOST")
        if not firestore_host:
            starting, firestore_host = datastores.launch_firestore_emulator(
                project, self.log_dir, rules=SOURCE_DIR / "firestore.rules"
            )
            waits.append(starting)
            self.children.add(starting.child, int(firestore_host.rsplit(":", 1)[1]), None)
        redis_url, redis_server_port, proxy_control = _start_redis(
            self.children, self.log_dir, self.redis_cluster, waits
        )

        env.update(
            FIRESTORE_EMULATOR_HOST=firestore_host,
            REDIS_URL=redis_url,
            GCLOUD_PROJECT=project,
            FUNCTIONS_EMULATOR="true",
            FIREBASE_AUTH_EMULATOR_HOST=auth_host
            or env.get("FIREBASE_AUTH_EMULATOR_HOST", AUTH_EMULATOR_HOST),
            PACK391_PORT=str(port),
            PYTHONUNBUFFERED="1",
            # the source first; an inherited path (the suite's recorders) after it
            PYTHONPATH=os.pathsep.join(p for p in (str(SOURCE_DIR), env.get("PYTHONPATH")) if p),
        )
        if auth_host:  # the functions server proxies it on its origin (the ops page's sign-in)
            env[auth_emulator.ADDRESS_ENV] = auth_host
        functions_argv = [sys.executable, "-m", "stack.platform.server", "--port", str(port)]
        sandbox_argv = [
            sys.executable, "-m", "stack.sandbox", "--port", str(sandbox_port),
            "--redis-url", redis_url, "--functions-url", caller.local_functions_url(),
        ]  # fmt: skip
        sandbox_health = f"http://127.0.0.1:{sandbox_port}/__health"

        def start_functions(append: bool = True) -> procs.Child:
            child = procs.spawn("functions", functions_argv, self.log_dir, env, SOURCE_DIR, append)
            _wait_for_server(child, caller.local_base_url(), self.stopping)
            return child

        def start_sandbox(append: bool = True) -> procs.Child:
            child = procs.spawn("sandbox", sandbox_argv, self.log_dir, env, SOURCE_DIR, append)
            procs.wait_http(child, sandbox_health, 60)
            return child

        # Both start at once (each takes seconds to import), beside the backends.
        server = procs.spawn("functions", functions_argv, self.log_dir, env, SOURCE_DIR)
        sandbox = procs.spawn("sandbox", sandbox_argv, self.log_dir, env, SOURCE_DIR)
        self.children.add(server, port, start_functions)
        # load testing: the sandbox of the app's endpoints the scenarios hit
        self.children.add(sandbox, sandbox_port, start_sandbox)
        from stack.platform.world import bootstrap_world  # meanwhile: it loads the deploy guard

        for starting in waits:
            starting.wait()
        listing = _wait_for_server(server, caller.local_base_url(), self.stopping)
        self.scheduler = start_scheduler(
            caller.local_base_url(), project, region, listing["functions"]
        )
        procs.wait_http(sandbox, sandbox_health, 60)
        world_call = functools.partial(caller.call, caller.local())  # the spec's world
        bootstrap_world(world_call, redis_url, f"http://127.0.0.1:{sandbox_port}")

        self.info = {
            "supervisorPid": os.getpid(),
            "project": project,
            "region": region,
            "functionsUrl": caller.local_base_url(),
            "sandboxUrl": f"http://127.0.0.1:{sandbox_port}",
            "firestoreHost": firestore_host,
            "authEmulatorHost": auth_host,
            "redisUrl": redis_url,
            "redisServerPort": redis_server_port,
            "redisProxyControl": proxy_control,
            "faultsDir": str(faults_dir),
            "logDir": str(self.log_dir),
            "startedAt": time.time(),
        }
        self.write_state()
        return {
            "sandbox": f"http://127.0.0.1:{sandbox_port}",
            "firestore": firestore_host,
            "auth": f"http://{auth_host}" if auth_host else "not started (--no-auth-emulator)",
            "redis": (
                f"{redis_url}  (Redis Cluster: {', '.join(self._cluster_nodes())})"
                if self.redis_cluster and not os.environ.get("REDIS_URL")
                else redis_url if redis_server_port is None
                else f"{redis_url}  (latency proxy; redis-server on port {redis_server_port})"
            ),
            "functions": f"{caller.local_base_url()}/{project}/{region}/<name>",
            "count": str(len(listing["functions"])),
        }  # fmt: skip

    def _cluster_nodes(self) -> list[str]:
        return [
            f"{name} :{sup.port}"
            for name, sup in self.children.supervised.items()
            if name.startswith("redis-") and name != "redis-proxy"
        ]

    # ------------------------------------------------------------ supervision

    def supervise(self) -> str | None:
        """One look at the children: restart the dead ones (a line on stdout each), wake
        stray stopped ones, undo expired fault leases. A message when the stack must stop."""
        fatal = self.children.restart_dead(self.stopping.is_set, self.write_state, self._held)
        if fatal is not None:
            return fatal
        if time.monotonic() >= self._next_lease_check:
            self._next_lease_check = time.monotonic() + LEASE_CHECK_EVERY_SEC
            self._check_faults()
        return None

    def _held(self) -> set[str]:
        """Children a fault's live lease keeps down (not restarted until it is undone)."""
        return faults.held_children(stack_handle.faults_dir_for(self.state_path))

    def _check_faults(self) -> None:
        """Undo leases whose holder died or whose deadline passed; SIGCONT a child left
        stopped without a lease for faults.STOPPED_GRACE_SEC."""
        if not self.info:
            return
        try:
            handle = stack_handle.StackHandle.load(self.state_path)
        except stack_handle.NoStackError:
            return
        for line in faults.reap(handle):
            print(f"pack391 serve: {line}", flush=True)
        leased = faults.leased_pids(handle.faults_dir)
        self.children.wake_stopped(leased, faults.STOPPED_GRACE_SEC)

    # ------------------------------------------------------------ state file

    def write_state(self) -> None:
        """``.local/stack.json`` (PACK391_STACK_STATE): what ``pack391 chaos`` and
        :class:`stack.platform.handle.StackHandle` reads; rewritten after every restart."""
        state = {
            **self.info,
            "children": {
                name: {"pid": sup.child.process.pid, "port": sup.port}
                for name, sup in self.children.supervised.items()
            },
            "restarts": {name: len(sup.restarts) for name, sup in self.children.supervised.items()},
            "updatedAt": time.time(),
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_path)

    def _remove_state(self) -> None:
        try:
            ours = json.loads(self.state_path.read_text()).get("supervisorPid") == os.getpid()
        except (OSError, ValueError):
            return
        if ours:
            self.state_path.unlink(missing_ok=True)
            shutil.rmtree(stack_handle.faults_dir_for(self.state_path), ignore_errors=True)


def _launch_auth_emulator(children: Supervisor, project: str, waits: list[procs.Starting]) -> str:
    """Spawn the Auth emulator (its start added to ``waits``; restarted on its port, with
    no users, when it dies); its ``host:port``."""
    starting, host = auth_emulator.launch_auth_emulator(project, children.log_dir)
    waits.append(starting)
    port = int(host.rsplit(":", 1)[1])
    children.add(starting.child, port, children.auth_emulator_restarter(project, port))
    return host


def _start_redis(
    children: Supervisor, log_dir: Path, redis_cluster: bool, waits: list[procs.Starting]
) -> tuple[str, int | None, str | None]:
    """Redis for the stack: REDIS_URL's (checked), a cluster of its own, or a redis-server
    behind the latency proxy (their starts added to ``waits``). Its URL for clients, the
    real redis-server's port and the proxy's control URL (None: not the stack's own)."""
    redis_url = os.environ.get("REDIS_URL")
    redis_server_port: int | None = None
    proxy_control: str | None = None
    if redis_url:
        # here: `pack391 loadtest` workers need none of it
        from shared.redis import client_for_url, cluster_url

        if redis_cluster and cluster_url(redis_url) is None:
            raise procs.StackError(
                f"--redis-cluster with REDIS_URL={redis_url}: unset REDIS_URL for a "
                "cluster of the stack's own, or give a redis+cluster:// URL"
            )
        client = client_for_url(redis_url, timeout_ms=2000)
        try:
            client.ping()
        finally:
            client.close()
    elif redis_cluster:
        # No latency proxy: a cluster's nodes announce their own addresses, which the
        # client then connects to, so a proxy in front of one would be bypassed.
        nodes, redis_url = datastores.start_redis_cluster(log_dir)
        for node in nodes:
            restart = children.cluster_node_restarter(node.name, datastores.node_argv(node))
            children.add(node, datastores.node_port(node), restart, keep_data=True)
    else:
        starting, server_url = datastores.launch_redis(log_dir)
        waits.append(starting)
        redis_server_port = int(server_url.rsplit(":", 1)[1].split("/")[0])
        children.add(starting.child, redis_server_port, children.redis_restarter(redis_server_port))
        # Clients talk to Redis through the latency proxy ("Redis is slow" on demand).
        proxying, proxy_port, control_port = datastores.launch_latency_proxy(
            log_dir, redis_server_port
        )
        waits.append(proxying)
        restart = children.proxy_restarter(redis_server_port, proxy_port, control_port)
        children.add(proxying.child, proxy_port, restart)
        redis_url = f"redis://127.0.0.1:{proxy_port}/0"
        proxy_control = f"http://127.0.0.1:{control_port}"
    return redis_url, redis_server_port, proxy_control


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_for_server(
    child: procs.Child, base_url: str, stopping: threading.Event | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    port = int(base_url.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        if stopping is not None and stopping.is_set():
            raise procs.StackError("stopping")
        if child.process.poll() is not None:
            raise procs.StackError(f"the functions server exited:\n{child.log_tail()}")
        if not procs.owns_listener(child.process.pid, port):  # not up yet, or not ours
            time.sleep(0.2)
            continue
        try:
            listing: dict[str, Any] = requests.get(f"{base_url}/__/functions", timeout=1).json()
            return listing
        except requests.RequestException:
            time.sleep(0.2)
    raise procs.StackError(f"the functions server did not start:\n{child.log_tail()}")


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stack = Stack(
        Path(args.log_dir),
        redis_cluster=cluster_wanted(args.redis_cluster),
        auth_emulator=args.auth_emulator,
    )
    stopping = stack.stopping

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        urls = stack.start()
    except procs.StackError as exc:
        stack.stop()
        print(f"pack391 serve: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        stack.stop()
        raise
    name = "pack391_getMarketControls"
    print(f"Firestore emulator   {urls['firestore']}")
    auth = urls["auth"]
    if stack.auth_emulator:
        auth += (
            f"  (proxied on {caller.local_base_url()}, the ops page's origin; a staff user: "
            "./venv/bin/pack391 grant --role ops EMAIL)"
        )
    print(f"Auth emulator        {auth}")
    print(f"Redis                {urls['redis']}")
    print(f"Functions ({urls['count']})       {urls['functions']}")
    print(f"Load-test sandbox    {urls['sandbox']}")
    print(f"Logs                 {args.log_dir}/")
    print(f"State                {stack.state_path}  (pack391 chaos FAULT reads it)")
    # The page signs in through the Auth emulator (never a token in the URL).
    sign_in = (
        "sign in as a user of ./venv/bin/pack391 grant --role ops EMAIL"
        if stack.auth_emulator
        else "no Auth emulator (--no-auth-emulator): nobody can sign in"
    )
    print(f"Ops console          {caller.local_base_url()}/ops/  ({sign_in})")
    print("Example:")
    print(f"  ./venv/bin/pack391 call {name} '{{}}' --role ops")
    print(
        f"  curl -s -X POST {caller.function_url(name)} -H 'Content-Type: application/json' "
        f'-H "Authorization: Bearer $(./venv/bin/pack391 token --role ops)" -d \'{{"data":{{}}}}\''
    )
    print("pack391 local stack ready (Ctrl-C stops it)", flush=True)
    code = 0
    try:
        while not stopping.wait(SUPERVISE_EVERY_SEC):
            fatal = stack.supervise()
            if fatal:
                print(f"pack391 serve: {fatal}", file=sys.stderr, flush=True)
                code = 1
                break
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return code
