"""``pack391 serve``: the local stack's supervisor. It starts the Firestore emulator,
Redis behind its latency proxy, the functions server, the load-test sandbox and the local
Cloud Scheduler, restarts a child that dies, and stops them all on exit."""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from shared import thresholds as t
from shared.config import FUNCTIONS_REGION, project_id
from stack import faults, loadtest, procs
from stack.cli import caller
from stack.scheduler import start_scheduler

SOURCE_DIR = Path(__file__).resolve().parents[2]
"""The functions source directory (where main.py and firebase.json are)."""

AUTH_EMULATOR_HOST = "127.0.0.1:9099"
"""Set as FIREBASE_AUTH_EMULATOR_HOST so firebase-admin accepts emulator tokens.
Token verification needs no running Auth emulator; nothing listens there."""


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the local stack in the foreground (Ctrl-C stops it)")
    serve.add_argument("--log-dir", default=str(SOURCE_DIR / ".local" / "logs"), help="child logs")
    serve.set_defaults(func=cmd_serve)


RESTART_LIMIT = 5
"""A child that dies this many times within RESTART_WINDOW_SEC is not restarted again."""
RESTART_WINDOW_SEC = 60.0
SUPERVISE_EVERY_SEC = 0.1
"""How often the supervisor looks at its children (a dead one is restarted within this)."""
LEASE_CHECK_EVERY_SEC = 0.5
"""How often it looks at applied faults' leases and at stopped children."""


@dataclass
class Supervised:
    """A child, its port and how to start it again (None: a death stops the stack)."""

    child: procs.Child
    port: int | None
    restart: Callable[[], procs.Child] | None
    restarts: list[float] = field(default_factory=list)
    stopped_since: float | None = None


class Stack:
    """The supervisor: starts the children, restarts one that dies (Redis empty, on the
    same port; the functions server, the sandbox and the Redis latency proxy on theirs),
    writes the state file ``pack391 chaos`` reads, and stops them all on exit.

    A Firestore emulator death stops the stack: it keeps its data only in memory, so an
    empty emulator would silently break every test of what was stored.

    Children are started and restarted from the thread that runs :meth:`supervise`
    (the main thread): their parent-death signal follows the forking thread."""

    def __init__(self, log_dir: Path, state_path: Path | None = None) -> None:
        self.log_dir = log_dir
        self.state_path = state_path or faults.default_state_path()
        self.supervised: dict[str, Supervised] = {}
        self.scheduler: Any = None
        self.stopping = threading.Event()
        self.info: dict[str, Any] = {}
        self._next_lease_check = 0.0

    @property
    def children(self) -> list[procs.Child]:
        return [s.child for s in self.supervised.values()]

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for supervised in reversed(list(self.supervised.values())):
            supervised.child.stop()
        self.supervised.clear()
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
        # the spec's seven services (stack.world.DEPLOY_SERVICES_ENV, without its imports)
        env.setdefault("PACK391_DEPLOY_SERVICES", ",".join(t.SCALING_SERVICE_INSTANCES))
        port = caller.local_port()
        sandbox_port = loadtest.sandbox_port()
        for wanted, setting in ((port, "PACK391_PORT"), (sandbox_port, "PACK391_SANDBOX_PORT")):
            if not _port_free(wanted):
                raise procs.StackError(f"port {wanted} is in use: set {setting} to a free port")
        # the pre-deploy gate `api_endpoints` probes the app the local stack serves
        env.setdefault("PACK391_DEPLOY_PROBE_URLS", f"http://127.0.0.1:{sandbox_port}/__health")
        faults_dir = faults.faults_dir_for(self.state_path)
        for stale in faults_dir.glob("*.json"):  # a previous stack's leases mean nothing now
            stale.unlink(missing_ok=True)

        # Every child is spawned first and waited for after: their starts (a JVM, two
        # Python servers importing the bundle) overlap instead of adding up.
        waits: list[procs.Starting] = []
        firestore_host = os.environ.get("FIRESTORE_EMULATOR_HOST")
        if not firestore_host:
            starting, firestore_host = procs.launch_firestore_emulator(
                project, self.log_dir, rules=SOURCE_DIR / "firestore.rules"
            )
            waits.append(starting)
            self._add(starting.child, int(firestore_host.rsplit(":", 1)[1]), None)
        redis_url = os.environ.get("REDIS_URL")
        redis_server_port: int | None = None
        proxy_control: str | None = None
        if redis_url:
            import redis as redis_lib  # here: `pack391 loadtest` workers need none of it

            redis_lib.Redis.from_url(redis_url, socket_timeout=2).ping()
        else:
            starting, server_url = procs.launch_redis(self.log_dir)
            waits.append(starting)
            redis_server_port = int(server_url.rsplit(":", 1)[1].split("/")[0])
            self._add(starting.child, redis_server_port, self._redis_restarter(redis_server_port))
            # Clients talk to Redis through the latency proxy ("Redis is slow" on demand).
            proxying, proxy_port, control_port = procs.launch_latency_proxy(
                self.log_dir, redis_server_port
            )
            waits.append(proxying)
            restart = self._proxy_restarter(redis_server_port, proxy_port, control_port)
            self._add(proxying.child, proxy_port, restart)
            redis_url = f"redis://127.0.0.1:{proxy_port}/0"
            proxy_control = f"http://127.0.0.1:{control_port}"

        env.update(
            FIRESTORE_EMULATOR_HOST=firestore_host,
            REDIS_URL=redis_url,
            GCLOUD_PROJECT=project,
            FUNCTIONS_EMULATOR="true",
            FIREBASE_AUTH_EMULATOR_HOST=env.get("FIREBASE_AUTH_EMULATOR_HOST", AUTH_EMULATOR_HOST),
            PACK391_PORT=str(port),
            PYTHONUNBUFFERED="1",
            # the source first; an inherited path (the suite's recorders) after it
            PYTHONPATH=os.pathsep.join(p for p in (str(SOURCE_DIR), env.get("PYTHONPATH")) if p),
        )
        functions_argv = [sys.executable, "-m", "stack.server", "--port", str(port)]
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
        self._add(server, port, start_functions)
        # load testing (issue 5): the sandbox of the app's endpoints the scenarios hit
        self._add(sandbox, sandbox_port, start_sandbox)
        from stack.world import bootstrap_world  # meanwhile: it loads the deploy guard

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
            "redis": redis_url if redis_server_port is None else (
                f"{redis_url}  (latency proxy; redis-server on port {redis_server_port})"
            ),
            "functions": f"{caller.local_base_url()}/{project}/{region}/<name>",
            "count": str(len(listing["functions"])),
        }  # fmt: skip

    def _add(
        self, child: procs.Child, port: int | None, restart: Callable[[], procs.Child] | None
    ) -> None:
        self.supervised[child.name] = Supervised(child, port, restart)

    def _redis_restarter(self, port: int) -> Callable[[], procs.Child]:
        def restart() -> procs.Child:
            return procs.start_redis(self.log_dir, port=port, append=True)[0]

        return restart

    def _proxy_restarter(
        self, upstream: int, listen: int, control: int
    ) -> Callable[[], procs.Child]:
        def restart() -> procs.Child:
            return procs.start_latency_proxy(self.log_dir, upstream, listen, control, True)[0]

        return restart

    # ------------------------------------------------------------ supervision

    def supervise(self) -> str | None:
        """One look at the children: restart the dead ones (a line on stdout each), wake
        stray stopped ones, undo expired fault leases. A message when the stack must stop."""
        for name, sup in list(self.supervised.items()):
            code = sup.child.process.poll()
            if code is None or self.stopping.is_set():
                continue
            if sup.restart is None:
                return (
                    f"the {name} exited ({code}). It kept its data only in memory, so "
                    "that data is gone: stopping the stack (run `make run` again).\n"
                    f"{sup.child.log_tail()}"
                )
            now = time.monotonic()
            sup.restarts = [t for t in sup.restarts if now - t < RESTART_WINDOW_SEC]
            if len(sup.restarts) >= RESTART_LIMIT:
                return (
                    f"{name} exited ({code}) {RESTART_LIMIT} times within "
                    f"{RESTART_WINDOW_SEC:.0f}s: not restarting it again\n{sup.child.log_tail()}"
                )
            sup.child.stop()  # its leftovers (Redis: the data directory) go too
            try:
                sup.child = sup.restart()
            except procs.StackError as exc:
                if self.stopping.is_set():  # Ctrl-C during the restart: a normal stop
                    return None
                return f"could not restart {name}: {exc}"
            sup.restarts.append(now)
            took = time.monotonic() - now
            print(f"restarted {name} (exit {code}) in {took:.1f}s", flush=True)
            self.write_state()
        if time.monotonic() >= self._next_lease_check:
            self._next_lease_check = time.monotonic() + LEASE_CHECK_EVERY_SEC
            self._check_faults()
        return None

    def _check_faults(self) -> None:
        """Undo leases whose holder died or whose deadline passed; SIGCONT a child left
        stopped without a lease for faults.STOPPED_GRACE_SEC."""
        if not self.info:
            return
        try:
            handle = faults.StackHandle.load(self.state_path)
        except faults.FaultError:
            return
        for line in faults.reap(handle):
            print(f"pack391 serve: {line}", flush=True)
        leased = faults.leased_pids(handle.faults_dir)
        now = time.monotonic()
        for name, sup in self.supervised.items():
            pid = sup.child.process.pid
            stat = procs.process_stat(pid)
            if stat is None or stat[0] != "T" or pid in leased:
                sup.stopped_since = None
                continue
            if sup.stopped_since is None:
                sup.stopped_since = now
            elif now - sup.stopped_since >= faults.STOPPED_GRACE_SEC:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)
                sup.stopped_since = None
                print(f"pack391 serve: woke {name} (stopped with no fault lease)", flush=True)

    # ------------------------------------------------------------ state file

    def write_state(self) -> None:
        """``.local/stack.json`` (PACK391_STACK_STATE): what ``pack391 chaos`` and
        :class:`stack.faults.StackHandle` read; rewritten after every restart."""
        state = {
            **self.info,
            "children": {
                name: {"pid": sup.child.process.pid, "port": sup.port}
                for name, sup in self.supervised.items()
            },
            "restarts": {name: len(sup.restarts) for name, sup in self.supervised.items()},
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
            shutil.rmtree(faults.faults_dir_for(self.state_path), ignore_errors=True)


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
    stack = Stack(Path(args.log_dir))
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
    print(f"Redis                {urls['redis']}")
    print(f"Functions ({urls['count']})       {urls['functions']}")
    print(f"Load-test sandbox    {urls['sandbox']}")
    print(f"Logs                 {args.log_dir}/")
    print(f"State                {stack.state_path}  (pack391 chaos FAULT reads it)")
    # No token in the URL (history, logs, Referer): the page takes it in its token field.
    print(
        f"Ops dashboard        {caller.local_base_url()}/ops/  "
        "(token: ./venv/bin/pack391 token --role ops)"
    )
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
