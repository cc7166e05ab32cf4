"""The ``pack391`` command: run the local stack and talk to it.

    pack391 serve                       the local stack (what `make run` runs)
    pack391 token --role admin          an ID token the local stack accepts
    pack391 call NAME '{"json": 1}'     call a callable, print its result
    pack391 trigger NAME                run a scheduled function now
    pack391 backup | verify | restore   logical backups of the local stack's Firestore
    pack391 deploy validate|pin-traffic|start|status|wait|rollback|control|token|local-revision
                   |env|secrets   (env: .env.<project> for firebase deploy; secrets: check them)
                                        the deploy guard (local stack, or a deployed
                                        project with PACK391_FUNCTIONS_URL + PACK391_ID_TOKEN)
    pack391 seed-ops --firestore H:P    seed the ops dashboard's source collections
    pack391 loadtest SCENARIO           a load-test scenario from this machine (CI gate)
    pack391 chaos FAULT [--for S]       apply a fault to the running stack for S seconds

Environment: PACK391_PORT (5001), GCLOUD_PROJECT (demo-avalo), PACK391_REGION
(us-central1), FIRESTORE_EMULATOR_HOST and REDIS_URL (reuse running servers),
FIRESTORE_EMULATOR_JAR (where the emulator jar is). backup, verify and restore need
FIRESTORE_EMULATOR_HOST and read the PACK391_BACKUP_* settings the functions use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from shared.config import FUNCTIONS_REGION, project_id
from shared.thresholds import BACKUP_REGIONS
from stack import deploy_env, faults, loadtest, procs
from stack.scheduler import fire, start_scheduler
from stack.tokens import ROLE_CLAIMS, role_token

SOURCE_DIR = Path(__file__).resolve().parent.parent
"""The functions source directory (where main.py and firebase.json are)."""

AUTH_EMULATOR_HOST = "127.0.0.1:9099"
"""Set as FIREBASE_AUTH_EMULATOR_HOST so firebase-admin accepts emulator tokens.
Token verification needs no running Auth emulator; nothing listens there."""


def _port() -> int:
    return int(os.environ.get("PACK391_PORT", "5001"))


def _base_url() -> str:
    return f"http://127.0.0.1:{_port()}"


def _function_url(name: str) -> str:
    return f"{_base_url()}/{project_id()}/{FUNCTIONS_REGION.value}/{name}"


# ----------------------------------------------------------------- serve


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
        port = _port()
        sandbox_port = loadtest.sandbox_port()
        for wanted, setting in ((port, "PACK391_PORT"), (sandbox_port, "PACK391_SANDBOX_PORT")):
            if not _port_free(wanted):
                raise procs.StackError(f"port {wanted} is in use: set {setting} to a free port")
        faults_dir = faults.faults_dir_for(self.state_path)
        for stale in faults_dir.glob("*.json"):  # a previous stack's leases mean nothing now
            stale.unlink(missing_ok=True)

        firestore_host = os.environ.get("FIRESTORE_EMULATOR_HOST")
        if not firestore_host:
            child, firestore_host = procs.start_firestore_emulator(
                project, self.log_dir, rules=SOURCE_DIR / "firestore.rules"
            )
            self._add(child, int(firestore_host.rsplit(":", 1)[1]), None)
        redis_url = os.environ.get("REDIS_URL")
        redis_server_port: int | None = None
        proxy_control: str | None = None
        if redis_url:
            import redis as redis_lib  # here: `pack391 loadtest` workers need none of it

            redis_lib.Redis.from_url(redis_url, socket_timeout=2).ping()
        else:
            child, server_url = procs.start_redis(self.log_dir)
            redis_server_port = int(server_url.rsplit(":", 1)[1].split("/")[0])
            self._add(child, redis_server_port, self._redis_restarter(redis_server_port))
            # Clients talk to Redis through the latency proxy ("Redis is slow" on demand).
            proxy, proxy_port, control_port = procs.start_latency_proxy(
                self.log_dir, redis_server_port
            )
            self._add(proxy, proxy_port, self._proxy_restarter(redis_server_port, proxy_port,
                                                               control_port))  # fmt: skip
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
            PYTHONPATH=str(SOURCE_DIR),
        )
        functions_argv = [sys.executable, "-m", "stack.server", "--port", str(port)]
        sandbox_argv = [
            sys.executable, "-m", "stack.sandbox", "--port", str(sandbox_port),
            "--redis-url", redis_url, "--functions-url", f"{_base_url()}/{project}/{region}",
        ]  # fmt: skip
        sandbox_health = f"http://127.0.0.1:{sandbox_port}/__health"

        def start_functions(append: bool = True) -> procs.Child:
            child = procs.spawn("functions", functions_argv, self.log_dir, env, SOURCE_DIR, append)
            _wait_for_server(child, _base_url(), self.stopping)
            return child

        def start_sandbox(append: bool = True) -> procs.Child:
            child = procs.spawn("sandbox", sandbox_argv, self.log_dir, env, SOURCE_DIR, append)
            procs.wait_http(child, sandbox_health, 60)
            return child

        # Both start at once (each takes seconds to import); then wait for both.
        server = procs.spawn("functions", functions_argv, self.log_dir, env, SOURCE_DIR)
        sandbox = procs.spawn("sandbox", sandbox_argv, self.log_dir, env, SOURCE_DIR)
        self._add(server, port, start_functions)
        # load testing (issue 5): the sandbox of the app's endpoints the scenarios hit
        self._add(sandbox, sandbox_port, start_sandbox)
        listing = _wait_for_server(server, _base_url(), self.stopping)
        self.scheduler = start_scheduler(_base_url(), project, region, listing["functions"])
        procs.wait_http(sandbox, sandbox_health, 60)

        self.info = {
            "supervisorPid": os.getpid(),
            "project": project,
            "region": region,
            "functionsUrl": _base_url(),
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
            "functions": f"{_base_url()}/{project}/{region}/<name>",
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
    while time.monotonic() < deadline:
        if stopping is not None and stopping.is_set():
            raise procs.StackError("stopping")
        if child.process.poll() is not None:
            raise procs.StackError(f"the functions server exited:\n{child.log_tail()}")
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
    print(f"Ops dashboard        {_base_url()}/ops/  (token: ./venv/bin/pack391 token --role ops)")
    print("Example:")
    print(f"  ./venv/bin/pack391 call {name} '{{}}' --role ops")
    print(
        f"  curl -s -X POST {_function_url(name)} -H 'Content-Type: application/json' "
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


# ------------------------------------------------------- token/call/trigger


def cmd_token(args: argparse.Namespace) -> int:
    print(role_token(project_id(), args.role, args.uid))
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"pack391 call: DATA is not valid JSON: {exc}", file=sys.stderr)
        return 2
    headers = {"Content-Type": "application/json"}
    if args.role != "none":
        headers["Authorization"] = f"Bearer {role_token(project_id(), args.role, args.uid)}"
    try:
        response = requests.post(
            _function_url(args.name), json={"data": data}, headers=headers, timeout=args.timeout
        )
    except requests.RequestException as exc:
        print(
            f"pack391 call: cannot reach the local stack at {_base_url()}: {exc}", file=sys.stderr
        )
        return 3
    try:
        body = response.json()
    except ValueError:
        print(f"pack391 call: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
        return 1
    if "result" in body:
        print(json.dumps(body["result"], indent=2, sort_keys=True))
        return 0
    print(json.dumps(body.get("error", body), indent=2, sort_keys=True), file=sys.stderr)
    return 1


# ------------------------------------------------------------------ deploy

FINAL_PHASES = {"succeeded": 0, "rolled_back": 1, "failed": 1}
"""Exit code of ``pack391 deploy wait`` per final phase (2: timed out)."""

IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com"
"""Where a custom token is exchanged for an ID token (PACK391_IDENTITY_TOOLKIT_URL)."""


class CallFailed(Exception):
    """A deploy command's call answered an error (printed) or could not be made."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _target_url(name: str) -> str:
    """``PACK391_FUNCTIONS_URL/NAME`` for a deployed project (e.g.
    ``https://us-central1-PROJECT.cloudfunctions.net``), else the local stack."""
    remote = os.environ.get("PACK391_FUNCTIONS_URL", "").rstrip("/")
    return f"{remote}/{name}" if remote else _function_url(name)


def _bearer(role: str) -> str:
    """PACK391_ID_TOKEN (a deployed project's Firebase ID token), else a local token."""
    return os.environ.get("PACK391_ID_TOKEN") or role_token(project_id(), role)


def invoke(name: str, data: Any, role: str = "admin", timeout: float = 60.0) -> Any:
    """Call ``name`` with ``data``; the result, or :class:`CallFailed` (error printed)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {_bearer(role)}"}
    try:
        response = requests.post(
            _target_url(name), json={"data": data}, headers=headers, timeout=timeout
        )
    except requests.RequestException as exc:
        print(f"pack391: cannot reach {_target_url(name)}: {exc}", file=sys.stderr)
        raise CallFailed(3) from None
    try:
        body = response.json()
    except ValueError:
        print(f"pack391: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
        raise CallFailed(1) from None
    if "result" in body:
        return body["result"]
    print(json.dumps(body.get("error", body), indent=2, sort_keys=True), file=sys.stderr)
    raise CallFailed(1)


def _print(result: Any) -> None:
    print(json.dumps(result, indent=2, sort_keys=True), flush=True)


def _deploy_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    services = {"services": args.services} if getattr(args, "services", None) else {}
    if args.deploy_command == "validate":
        return "pack391_preDeployValidator", {"version": args.version, "environment": args.env}
    if args.deploy_command == "pin-traffic":
        return "pack391_pinTraffic", {"environment": args.env, **services}
    if args.deploy_command == "start":
        data: dict[str, Any] = {"version": args.version, "environment": args.env, **services}
        if args.force:
            data.update(force=True, reason=args.reason)
        elif args.reason:
            data["reason"] = args.reason
        if args.bake_sec is not None:
            data["bakeSec"] = args.bake_sec
        return "pack391_startDeployment", data
    if args.deploy_command == "status":
        if args.deployment_id:
            return "pack391_getDeploymentStatus", {"deploymentId": args.deployment_id}
        return "pack391_getDeploymentStatus", {"environment": args.env} if args.env else {}
    if args.deploy_command == "rollback":
        return "pack391_rollbackController", {
            "deploymentId": args.deployment_id,
            "reason": args.reason,
        }
    return "pack391_controlDeployment", {
        "deploymentId": args.deployment_id,
        "action": args.action,
        "reason": args.reason,
    }


def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        if args.deploy_command == "wait":
            return _wait(args)
        if args.deploy_command == "token":
            print(mint_id_token(args.uid, args.api_key, args.service_account))
            return 0
        if args.deploy_command in deploy_env.COMMANDS:
            return deploy_env.cmd(args)
        if args.deploy_command == "local-revision":
            return _local_revision(args)
        name, data = _deploy_request(args)
        result = invoke(name, data)
    except CallFailed as failed:
        return failed.code
    if args.deploy_command == "validate":
        _print(result)
        return 0 if result["passed"] else 1
    if args.deploy_command == "start" and args.id_only:
        print(result["deploymentId"])
        return 0
    _print(result)
    return 0


def _wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        status = invoke("pack391_getDeploymentStatus", {"deploymentId": args.deployment_id})
        seen = (status["phase"], status["step"], status["trafficPercent"])
        if seen != last:
            print(f"{args.deployment_id}: {seen[0]} step {seen[1]} at {seen[2]}%", flush=True)
            last = seen
        if status["phase"] in FINAL_PHASES:
            if status["phase"] != "succeeded":
                _print({"phase": status["phase"], "history": status["history"][-3:]})
            return FINAL_PHASES[status["phase"]]
        if time.monotonic() >= deadline:
            print(f"pack391 deploy wait: still {status['phase']} after {args.timeout}s",
                  file=sys.stderr)  # fmt: skip
            return 2
        time.sleep(args.interval)


def _local_revision(args: argparse.Namespace) -> int:
    """What a deploy does on the local platform: a new latest revision, at 0 % when the
    service's traffic is pinned (at 100 % on a first deploy)."""
    from functions.deploy_guard.adapters import LocalTraffic

    if not args.redis_url:
        print("pack391 deploy local-revision: give --redis-url (printed by serve)", file=sys.stderr)
        return 2
    import redis as redis_lib

    platform = LocalTraffic(redis_lib.Redis.from_url(args.redis_url, decode_responses=True))
    platform.deploy(args.service, args.revision)
    _print({"service": args.service, "shares": platform.observe(args.service, "").shares})
    return 0


def signing_account(credential: Any) -> str | None:
    """The service account whose key signs custom tokens through IAM ``signBlob`` when the
    Application Default Credentials hold no key of their own: workload identity federation
    (google-github-actions/auth writes an ``external_account`` file that impersonates a
    service account) names it in its impersonation URL. None for a key file (it signs
    itself) or when unknown (firebase-admin then asks the metadata server)."""
    from google.oauth2 import service_account

    if isinstance(credential, service_account.Credentials):
        return None
    email = getattr(credential, "service_account_email", None)
    return email if isinstance(email, str) and "@" in email else None


def mint_id_token(uid: str, api_key: str, service_account: str | None = None) -> str:
    """A Firebase ID token with the ``admin`` claim for ``uid``: a custom token signed as
    the service account of the Application Default Credentials (a key file's own key, or
    IAM ``signBlob`` for ``service_account`` / the impersonated account of workload
    identity federation), exchanged through the Identity Toolkit
    (``accounts:signInWithCustomToken``) with the project's web API key."""
    import firebase_admin
    from firebase_admin import auth, credentials

    adc = credentials.ApplicationDefault()
    account = service_account or signing_account(adc.get_credential())
    app = firebase_admin.initialize_app(
        adc,
        {"serviceAccountId": account} if account else None,
        name=f"pack391-deploy-{uuid.uuid4().hex}",
    )
    try:
        custom = auth.create_custom_token(uid, {"admin": True}, app=app).decode()
    finally:
        firebase_admin.delete_app(app)
    base = os.environ.get("PACK391_IDENTITY_TOOLKIT_URL", IDENTITY_TOOLKIT).rstrip("/")
    response = requests.post(
        f"{base}/v1/accounts:signInWithCustomToken?key={api_key}",
        json={"token": custom, "returnSecureToken": True},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["idToken"]
    return token


def _add_deploy_parser(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy",
        help="the deploy guard: validate, pin traffic, start, watch, roll back",
        description=(
            "Talks to the local stack by default. For a deployed project set "
            "PACK391_FUNCTIONS_URL (e.g. https://us-central1-PROJECT.cloudfunctions.net) and "
            "PACK391_ID_TOKEN (from `pack391 deploy token`)."
        ),
    )
    dsub = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")

    def env_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--env", required=required, help="environment, e.g. production")

    def services_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--services", nargs="+", help="Cloud Run services (default: configured)")

    validate = dsub.add_parser("validate", help="run the pre-deploy gates (exit 1 if one fails)")
    validate.add_argument("--version", required=True)
    env_arg(validate)
    pin = dsub.add_parser("pin-traffic", help="pin traffic to the serving revisions")
    env_arg(pin)
    services_arg(pin)
    start = dsub.add_parser("start", help="start a canary deployment")
    start.add_argument("--version", required=True)
    env_arg(start)
    services_arg(start)
    start.add_argument("--force", action="store_true", help="start without a passing report")
    start.add_argument("--reason", help="why (required with --force)")
    start.add_argument("--bake-sec", type=int, help="hold of each step (default 300)")
    start.add_argument("--id-only", action="store_true", help="print only the deployment id")
    status = dsub.add_parser("status", help="one deployment, or the recent ones")
    status.add_argument("deployment_id", nargs="?")
    env_arg(status, required=False)
    wait = dsub.add_parser(
        "wait", help="poll until succeeded (exit 0), rolled back/failed (1) or timeout (2)"
    )
    wait.add_argument("deployment_id")
    wait.add_argument("--timeout", type=float, default=3600.0, help="seconds")
    wait.add_argument("--interval", type=float, default=15.0, help="seconds between polls")
    rollback = dsub.add_parser("rollback", help="100%% back to the stable revisions")
    rollback.add_argument("deployment_id")
    rollback.add_argument("--reason", required=True)
    control = dsub.add_parser("control", help="promote, pause, resume or abort")
    control.add_argument("deployment_id")
    control.add_argument("action", choices=["promote", "pause", "resume", "abort"])
    control.add_argument("--reason", required=True)
    token = dsub.add_parser(
        "token", help="mint a deployed project's admin ID token for a service account"
    )
    token.add_argument("--uid", default="deploy-bot", help="the Firebase user id to sign in as")
    token.add_argument(
        "--api-key",
        default=os.environ.get("FIREBASE_WEB_API_KEY", ""),
        help="the project's web API key (FIREBASE_WEB_API_KEY)",
    )
    token.add_argument(
        "--service-account",
        default=os.environ.get("PACK391_DEPLOY_SERVICE_ACCOUNT") or None,
        help="sign through IAM signBlob as this account (PACK391_DEPLOY_SERVICE_ACCOUNT; "
        "default: the key file's own key, or the account workload identity impersonates)",
    )
    deploy_env.add_parsers(dsub)
    local = dsub.add_parser(
        "local-revision", help="local stack only: land a new revision of a service"
    )
    local.add_argument("service")
    local.add_argument("revision")
    local.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL"), help="the stack's Redis (REDIS_URL)"
    )
    deploy.set_defaults(func=cmd_deploy)


def cmd_trigger(args: argparse.Namespace) -> int:
    try:
        status = fire(
            _base_url(), project_id(), FUNCTIONS_REGION.value, args.name, datetime.now(UTC)
        )
    except requests.RequestException as exc:
        print(
            f"pack391 trigger: cannot reach the local stack at {_base_url()}: {exc}",
            file=sys.stderr,
        )
        return 3
    if status == 200:
        print(f"{args.name}: ok")
        return 0
    print(f"{args.name}: failed with HTTP {status} (see the functions log)", file=sys.stderr)
    return 1


# ------------------------------------------------ backup/restore/verify (issue 8)


def _backup_parts() -> tuple[Any, Any]:
    """The backup service and store, wired exactly as the functions wire them."""
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        raise procs.StackError(
            "set FIRESTORE_EMULATOR_HOST to the local stack's emulator "
            "(`pack391 serve` prints it as 'Firestore emulator')"
        )
    os.environ.setdefault("FUNCTIONS_EMULATOR", "true")
    from functions.backup import backup_service, reset_backup_service
    from functions.backup.adapters import configured_store

    reset_backup_service()
    return backup_service(), configured_store(project_id())


def _print_json(value: Any) -> None:
    from shared.edge import to_wire

    print(json.dumps(to_wire(value), indent=2, sort_keys=True))


def cmd_backup(args: argparse.Namespace) -> int:
    from shared.clock import utc_now

    service, _ = _backup_parts()
    _print_json(service.backup(utc_now()))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from functions.backup.adapters import BackupCatalog
    from functions.backup.archive import BackupIntegrityError, WrongKey
    from functions.backup.policy import latest_complete
    from shared.firestore import get_db

    _, store = _backup_parts()
    catalog = BackupCatalog(get_db())
    regions = [args.region] if args.region else list(store.regions)
    record = (
        catalog.get(args.backup_id)
        if args.backup_id
        else latest_complete(catalog.all(), regions[0])
    )
    if record is None:
        print(f"pack391 verify: no backup {args.backup_id or '(none complete)'}", file=sys.stderr)
        return 1
    failed = 0
    for region in regions:
        try:
            store.verify(record, region)
            print(f"{record.backup_id} {region}: ok ({record.document_count} documents)")
        except (BackupIntegrityError, WrongKey) as exc:
            failed += 1
            print(f"{record.backup_id} {region}: FAILED: {exc.message}", file=sys.stderr)
    return 1 if failed else 0


def cmd_restore(args: argparse.Namespace) -> int:
    from functions.backup.adapters import FirestoreDocuments, LogicalBackupStore
    from functions.backup.archive import BackupIntegrityError, WrongKey

    _, store = _backup_parts()
    if not isinstance(store, LogicalBackupStore):
        print("pack391 restore: only logical backups restore here", file=sys.stderr)
        return 2
    from shared.errors import FailedPrecondition

    target = FirestoreDocuments.for_environment(project_id(), args.database)
    try:
        result = store.restore(args.backup_id, args.region, target, overwrite=args.overwrite)
    except (BackupIntegrityError, WrongKey, FailedPrecondition) as exc:
        print(f"pack391 restore: {exc.message}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "backupId": args.backup_id,
                "target": target.database_path,
                "documents": result.documents,
                "groupCounts": result.group_counts,
                "durationSec": round(result.duration_sec, 3),
            },
            indent=2,
            sort_keys=True,
        )
    )
    return 0


def cmd_seed_ops(args: argparse.Namespace) -> int:
    """Seed the app's source collections of the running stack's emulator (ops dashboard)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from stack.ops_seed import SeedSpec, scaled, seed

    host = args.firestore or os.environ.get("FIRESTORE_EMULATOR_HOST")
    if not host:
        print(
            "pack391 seed-ops: give --firestore HOST:PORT (printed by `make run`)", file=sys.stderr
        )
        return 2
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    db = firestore.Client(project=project_id(), credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    spec = scaled(args.size) if args.size else SeedSpec()
    written = seed(db, spec, datetime.now(UTC))
    print(f"seeded {written} documents; run: ./venv/bin/pack391 trigger pack391_updateLiveMetrics")
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    """Apply a fault to the running stack (``.local/stack.json``) for ``--for`` seconds."""
    try:
        handle = faults.StackHandle.load(Path(args.state) if args.state else None)
        for line in faults.reap(handle):
            print(line, flush=True)
        options: dict[str, float] = {"max_sec": args.seconds + faults.LEASE_GRACE_SEC}
        if args.delay_ms is not None:
            options["delay_ms"] = args.delay_ms
        if args.error_pct is not None:
            options["error_pct"] = args.error_pct
        if args.recover_sec is not None:
            options["recover_sec"] = args.recover_sec
        undo = faults.start_fault(handle, args.fault, **options)
    except (faults.FaultError, OSError, requests.RequestException) as exc:
        print(f"pack391 chaos: {exc}", file=sys.stderr)
        return 2
    notes = getattr(undo, "notes", "")
    print(f"{args.fault}: applied for {args.seconds:g}s ({notes})", flush=True)
    interrupted = False
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        window = undo()
    outage = window.undone_at - window.started_at
    if window.recovered_at is None:
        print(f"{args.fault}: undone after {outage:.1f}s but NOT recovered ({window.notes})",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    print(
        f"{args.fault}: undone after {outage:.1f}s, recovered in "
        f"{window.recovered_at - window.undone_at:.1f}s ({window.notes})",
        flush=True,
    )
    return 130 if interrupted else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pack391",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the local stack in the foreground (Ctrl-C stops it)")
    serve.add_argument("--log-dir", default=str(SOURCE_DIR / ".local" / "logs"), help="child logs")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print an ID token the local stack accepts")
    token.add_argument("--role", choices=sorted(ROLE_CLAIMS), default="admin")
    token.add_argument("--uid", help="user id (default: <role>-1)")
    token.set_defaults(func=cmd_token)

    call = sub.add_parser("call", help="call a callable function on the local stack")
    call.add_argument("name", help="function name, e.g. pack391_getMarketControls")
    call.add_argument("data", nargs="?", default="{}", help="the request data as JSON (default {})")
    call.add_argument("--role", choices=[*sorted(ROLE_CLAIMS), "none"], default="admin")
    call.add_argument("--uid", help="user id (default: <role>-1)")
    call.add_argument("--timeout", type=float, default=60.0, help="seconds")
    call.set_defaults(func=cmd_call)

    trigger = sub.add_parser(
        "trigger", help="run a scheduled function now, as Cloud Scheduler would"
    )
    trigger.add_argument("name", help="function name, e.g. pack391_syncMarkets")
    trigger.set_defaults(func=cmd_trigger)

    backup = sub.add_parser(
        "backup", help="take a logical backup of the local stack's Firestore into .local/backups"
    )
    backup.set_defaults(func=cmd_backup)

    verify = sub.add_parser(
        "verify", help="check a backup's copies: manifest, SHA-256 and tag of every part"
    )
    verify.add_argument("backup_id", nargs="?", help="default: the latest complete backup")
    verify.add_argument("--region", choices=BACKUP_REGIONS, help="only this region's copy")
    verify.set_defaults(func=cmd_verify)

    restore = sub.add_parser("restore", help="restore a logical backup into a database")
    restore.add_argument("backup_id", help="e.g. 20261127T210000Z-1a2b3c (pack391 verify lists)")
    restore.add_argument("--database", default="(default)", help="target database id")
    restore.add_argument("--region", choices=BACKUP_REGIONS, default=BACKUP_REGIONS[0])
    restore.add_argument(
        "--overwrite",
        action="store_true",
        help="write even though the target already holds documents",
    )
    restore.set_defaults(func=cmd_restore)
    _add_deploy_parser(sub)
    seed_ops = sub.add_parser(
        "seed-ops", help="seed the app's source collections with known counts (ops dashboard)"
    )
    seed_ops.add_argument(
        "--firestore", help="emulator HOST:PORT (default $FIRESTORE_EMULATOR_HOST)"
    )
    seed_ops.add_argument("--size", type=int, default=0, help="about this many documents")
    seed_ops.set_defaults(func=cmd_seed_ops)

    # load testing (issue 5)
    loadtest.add_parser(sub)
    # chaos scenarios (issue 16): each fault during a load run, invariants checked
    from stack import chaos_run

    chaos_run.add_parser(sub)

    # faults on demand (issue 16): one fault against the running stack
    chaos = sub.add_parser(
        "chaos",
        help="apply a fault to the running stack for a while, then undo it",
        description=faults.__doc__.split("\n\n")[2] if faults.__doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chaos.add_argument("fault", choices=faults.FAULTS)
    chaos.add_argument("--for", dest="seconds", type=float, default=10.0, help="seconds (10)")
    chaos.add_argument("--delay-ms", type=float, help="redis-slow: delay per command (200)")
    chaos.add_argument("--error-pct", type=float, help="sandbox-errors: share of 500s (50)")
    chaos.add_argument(
        "--recover-sec", type=float, help="how long to wait for health after the undo (60)"
    )
    chaos.add_argument(
        "--state", help="the stack's state file (default $PACK391_STACK_STATE or .local/stack.json)"
    )
    chaos.set_defaults(func=cmd_chaos)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # shared.errors (and through it the Firebase SDK) is imported only when a command
    # needs it: `pack391 loadtest` and its forked workers stay light
    try:
        code: int = args.func(args)
    except procs.StackError as exc:
        print(f"pack391 {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from shared.errors import Pack391Error

        if not isinstance(exc, Pack391Error):
            raise
        print(f"pack391 {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
