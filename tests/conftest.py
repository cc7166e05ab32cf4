"""Fixtures: a real Firestore emulator and a real redis-server for the whole run.

Both are started on free ports by the same code as ``pack391 serve``
(:mod:`stack.platform.datastores`), never the machine's shared servers; every test
starts on empty data. Functions are called through the real callable wire protocol: a
Flask test client on the local server's app, or HTTP against it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT = "demo-pack391-test"

# Every Firestore query the run sends is checked against firestore.indexes.json at its end;
# every Google API method sent to a fake, against the roles `pack391 bootstrap` grants.
pytest_plugins = [
    "tests.plugins.firestore_queries",
    "tests.plugins.api_calls",
    "tests.plugins.cpu_probe",
]

# Static settings, before anything imports main (which initialises firebase-admin).
os.environ["GCLOUD_PROJECT"] = PROJECT
os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = "127.0.0.1:9099"
os.environ["FUNCTIONS_EMULATOR"] = "true"
# The production 50 ms Redis timeout makes a busy test machine look like a dead Redis;
# the timeout behaviour itself is tested with clients built for it.
os.environ["PACK391_REDIS_TIMEOUT_MS"] = "2000"
# The test client is the TCP peer, as on the local stack; the deployed front doors are
# tested through stack.platform.frontdoor, which forwards the way Google's front end does.
os.environ["PACK391_FRONT_DOOR"] = "direct"
# The fast canary judge's local chain is timers in the calling process: tests that judge a
# chosen minute must not have a timer judge the wall clock's between their steps. The
# chain's own tests wire it explicitly (tests/deploy_guard/test_fast_judge.py).
os.environ["PACK391_CANARY_FAST_JUDGE"] = "false"
os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
os.environ.pop("REDIS_URL", None)

from stack.platform import ports  # noqa: E402

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""``gw0``, ``gw1``... in a pytest-xdist worker (set before conftest is imported); empty in
a plain run and in the xdist controller."""
PORT_BLOCK = ports.claim_block(int(WORKER[2:]) + 1 if WORKER.startswith("gw") else 0)
"""This process's own ports (held until it exits): every server the tests start, and
every stack they start, takes its ports from this block (stack/platform/ports.py), never from the
kernel's ephemeral range, where a client socket or another worker's server can take a
port between its choice and its bind."""
os.environ[ports.PORT_RANGE_ENV] = PORT_BLOCK.spec
# Every emulator the tests start (the session's and each test stack's) lives seconds to
# minutes: the client compiler only and one GC thread halve its CPU (measured: 4.8 s
# against 10.4 s for the same 600 requests), and two cores are shared by two workers.
os.environ.setdefault("PACK391_EMULATOR_JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

import flask  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from shared import firestore as shared_firestore  # noqa: E402
from shared import redis as shared_redis  # noqa: E402
from shared.ratelimit import middleware as ratelimit_middleware  # noqa: E402
from shared.slo import recorder as slo_recorder  # noqa: E402
from stack.platform import auth_emulator as auth_emulators  # noqa: E402
from stack.platform import datastores, procs  # noqa: E402
from stack.platform.scheduler import scheduler_headers  # noqa: E402
from stack.platform.tokens import ROLE_CLAIMS, emulator_id_token, role_token  # noqa: E402


@dataclass(frozen=True)
class Backends:
    firestore_host: str
    redis_url: str
    project: str = PROJECT
    firestore_pid: int = 0
    """The emulator's process (its JVM): :func:`firestore_paused` stops it."""
    redis_pid: int = 0
    """The redis-server's process: :func:`redis_paused` stops it."""


Pauser = Callable[[], contextlib.AbstractContextManager[None]]
"""``firestore_paused``'s value: ``with firestore_paused(): ...``."""


def stop_process(pid: int, within_sec: float = 5.0) -> None:
    """SIGSTOP ``pid`` and wait until the kernel shows it stopped (state ``T``): the stop
    is delivered to each thread asynchronously, and on this loaded, shared VM a paused
    emulator once answered a request sent right after ``kill`` returned."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + within_sec
    while not _all_threads_stopped(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} not stopped {within_sec}s after SIGSTOP")
        time.sleep(0.005)


def _all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` in state ``T`` (``/proc/PID/stat`` is the main thread's
    alone; a JVM serves from others)."""
    tasks = Path(f"/proc/{pid}/task")
    states = [(procs.process_stat(int(t.name)) or ("?", 0))[0] for t in tasks.iterdir()]
    return bool(states) and all(state == "T" for state in states)


@contextlib.contextmanager
def _paused(pid: int) -> Iterator[None]:
    stop_process(pid)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def door_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The front door's clock and the edge's (which charges a wrong role after the door)
    stopped at one instant, for tests that count requests against the address's pre-auth
    bucket: it refills one request a second in this process, so 61 requests that took
    over a second on a loaded box would earn a 61st."""
    from shared import edge, edge_door
    from shared.clock import utc_now

    frozen = utc_now()
    monkeypatch.setattr(edge_door, "utc_now", lambda: frozen)
    monkeypatch.setattr(edge, "utc_now", lambda: frozen)
    return frozen


@pytest.fixture
def firestore_paused(backends: Backends) -> Pauser:
    """``with firestore_paused():`` the worker's Firestore emulator is paused (SIGSTOP: its
    connections hang, as under ``pack391 chaos firestore-pause``) and resumed after, also
    when the test fails inside. Each pytest-xdist worker has its own emulator, and runs one
    test at a time, so no other test sees the pause."""
    return lambda: _paused(backends.firestore_pid)


@pytest.fixture
def redis_paused(backends: Backends) -> Pauser:
    """``with redis_paused():`` the worker's redis-server is paused the same way (as
    ``pack391 chaos redis-pause``)."""
    return lambda: _paused(backends.redis_pid)


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-test-logs-"))
    children: list[procs.Child] = []
    try:
        try:
            emulator, host = datastores.start_firestore_emulator(
                PROJECT, log_dir, rules=ROOT / "firestore.rules"
            )
            children.append(emulator)
            redis_child, url = datastores.start_redis(log_dir)
            children.append(redis_child)
        except procs.StackError as exc:
            pytest.exit(f"cannot start the test backends:\n{exc}", returncode=3)
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        os.environ["REDIS_URL"] = url
        shared_firestore.reset_clients()
        shared_redis.reset_clients()
        yield Backends(
            host, url, firestore_pid=emulator.process.pid, redis_pid=redis_child.process.pid
        )
        datastores.forget_wipe_connection(host)
        _redis_of(url).close()
        _redis_of.cache_clear()
        _forget_backend_client(url)
    finally:
        for child in reversed(children):
            child.stop()


@functools.cache
def _redis_of(url: str) -> redis.Redis:
    """One client per test Redis (a new one per test cost 2 ms of the 0.2 a FLUSHALL takes)."""
    return redis.Redis.from_url(url)


@dataclass(frozen=True)
class RedisBackend:
    """The Redis a ``redis_backend`` test runs on: ``single`` (the session's redis-server)
    or ``cluster`` (a Redis Cluster of three primaries), its URL (``REDIS_URL`` during the
    test) and a client on it (replies decoded; the cluster client for the cluster)."""

    mode: str
    url: str
    client: redis.Redis


_BACKEND_CLIENTS: dict[str, redis.Redis] = {}


def _backend_client(url: str) -> redis.Redis:
    """One decoding client per test Redis or cluster (``shared.redis.client_for_url``)."""
    client = _BACKEND_CLIENTS.get(url)
    if client is None:
        client = _BACKEND_CLIENTS[url] = shared_redis.client_for_url(url)
    return client


def _forget_backend_client(url: str) -> None:
    client = _BACKEND_CLIENTS.pop(url, None)
    if client is not None:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A private Redis Cluster (three primaries, no replicas) for the whole run, started
    only when a test asks for it (once per xdist worker), by the same code as
    ``pack391 serve --redis-cluster``; its ``redis+cluster://`` URL."""
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-test-cluster-logs-"))
    try:
        children, url = datastores.start_redis_cluster(log_dir)
    except procs.StackError as exc:
        pytest.fail(f"cannot start the test Redis Cluster:\n{exc}")
    try:
        yield url
    finally:
        _forget_backend_client(url)
        for child in reversed(children):
            child.stop()


@pytest.fixture(params=["single", "cluster"], ids=["single", "cluster"])
def redis_backend(
    request: pytest.FixtureRequest, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisBackend]:
    """The test once on one Redis and once on a Redis Cluster. For ``cluster``,
    ``REDIS_URL`` is the cluster's during the test (``shared.redis.get_redis()`` gives the
    cluster client), every primary flushed first; the single Redis again after it."""
    if request.param == "single":  # `clean` has flushed it
        yield RedisBackend("single", backends.redis_url, _backend_client(backends.redis_url))
        return
    url: str = request.getfixturevalue("redis_cluster_url")
    monkeypatch.setenv("REDIS_URL", url)
    shared_redis.reset_clients()
    ratelimit_middleware.reset()
    slo_recorder.reset_default_recorder()
    datastores.flush_cluster(url)
    try:
        yield RedisBackend("cluster", url, _backend_client(url))
    finally:
        ratelimit_middleware.reset()  # nothing buffered for the cluster is sent to the next
        slo_recorder.reset_default_recorder()
        shared_redis.reset_clients()  # REDIS_URL is the single Redis's again (monkeypatch)


one_redis = pytest.mark.parametrize("redis_backend", ["single"], indirect=True)
"""On a test of a module that runs on both (``redis_backend``): this one on one Redis only.
For a long test whose Redis paths a shorter test of the same module runs on the cluster
(say which beside the mark): the cluster's run of the suite stays within its budget."""


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty Firestore and Redis before each test that uses the backends (except in a
    ``module_data`` module, which seeds its data once and leaves it as it found it)."""
    if request.node.get_closest_marker("module_data") is not None:
        yield
        return
    if "backends" in request.fixturenames or "functions" in request.fixturenames:
        be: Backends = request.getfixturevalue("backends")
        datastores.wipe_firestore(be.firestore_host, be.project)
        _redis_of(be.redis_url).flushall()
        ratelimit_middleware.reset()  # no traffic counters buffered by an earlier test
        slo_recorder.reset_default_recorder()  # nor recorded calls
    yield


@pytest.fixture(scope="session")
def functions(backends: Backends) -> dict[str, Any]:
    """Every deployed function of main.py, by name."""
    import main

    return {name: fn for name, fn in vars(main).items() if hasattr(fn, "__firebase_endpoint__")}


@dataclass
class CallResult:
    status: int
    body: dict[str, Any]

    @property
    def result(self) -> Any:
        assert "result" in self.body, f"expected a result, got HTTP {self.status}: {self.body}"
        return self.body["result"]

    @property
    def error(self) -> dict[str, Any]:
        assert "error" in self.body, f"expected an error, got HTTP {self.status}: {self.body}"
        error: dict[str, Any] = self.body["error"]
        return error


class Caller:
    """Calls functions through the callable protocol on the local server's Flask app."""

    def __init__(self, app: flask.Flask, project: str) -> None:
        self.app = app
        self.project = project

    def url(self, name: str) -> str:
        return f"/{self.project}/us-central1/{name}"

    def token(self, role: str, uid: str | None = None, **claims: Any) -> str:
        if claims:
            return emulator_id_token(self.project, uid or f"{role}-1", claims)
        return role_token(self.project, role, uid)

    def call(
        self,
        name: str,
        data: Any = None,
        role: str | None = "admin",
        uid: str | None = None,
        *,
        claims: dict[str, Any] | None = None,
    ) -> CallResult:
        """``claims``: more claims for the role's token (``{"email": ...}``)."""
        headers = {}
        if role is not None:
            token = (
                self.token(role, uid, **{**ROLE_CLAIMS[role], **claims})
                if claims
                else self.token(role, uid)
            )
            headers["Authorization"] = f"Bearer {token}"
        response = self.app.test_client().post(
            self.url(name), json={"data": data if data is not None else {}}, headers=headers
        )
        return CallResult(response.status_code, response.get_json())

    def trigger(self, name: str, schedule_time: datetime | None = None) -> int:
        """Run a scheduled function as Cloud Scheduler does (its POST and headers)."""
        when = schedule_time or datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
        response = self.app.test_client().post(
            self.url(name), data=b"{}", headers=scheduler_headers(name, "us-central1", when)
        )
        return response.status_code

    def raw(
        self, name: str, body: bytes, content_type: str = "application/json", role: str = "admin"
    ) -> CallResult:
        response = self.app.test_client().post(
            self.url(name),
            data=body,
            headers={
                "Content-Type": content_type,
                "Authorization": f"Bearer {self.token(role)}",
            },
        )
        return CallResult(response.status_code, response.get_json())


@pytest.fixture(scope="session")
def app(functions: dict[str, Any], backends: Backends) -> flask.Flask:
    from stack.platform.server import create_app

    return create_app(functions, backends.project)


@pytest.fixture
def caller(app: flask.Flask, backends: Backends) -> Caller:
    return Caller(app, backends.project)


@dataclass(frozen=True)
class AuthEmulator:
    """A running Firebase Auth emulator (``host:port``) for ``project``."""

    host: str
    project: str = PROJECT

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def wipe(self) -> None:
        """Delete every user (its own endpoint)."""
        auth_emulators.wipe_accounts(self.host, self.project)


@pytest.fixture(scope="session")
def auth_emulator(request: pytest.FixtureRequest) -> Iterator[AuthEmulator]:
    """A real Firebase Auth emulator (firebase-tools of tools/node_modules) for this test
    process (each test that uses it through :func:`proxied_auth_emulator` starts with no
    users), for the tests' project, on a port of this worker's block, started by the code
    ``pack391 serve`` uses (:mod:`stack.platform.auth_emulator`): 9 s and 10 CPU-seconds
    to start (measured), so only tests that sign users in ask for it, and the files that do
    share one per worker. No node or node_modules fails
    the test naming ``make setup`` (``PACK391_SKIP_FIREBASE_CLI=1``: skips, tests/needs.py)."""
    from tests.needs import missing

    try:
        auth_emulators.node_and_cli()
    except procs.StackError as exc:
        missing(request.config, "FIREBASE_CLI", f"the Firebase Auth emulator: {exc}")
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-test-auth-logs-"))
    try:
        child, host = auth_emulators.start_auth_emulator(PROJECT, log_dir)
    except procs.StackError as exc:
        pytest.fail(f"cannot start the Firebase Auth emulator:\n{exc}")
    try:
        yield AuthEmulator(host)
    finally:
        child.stop()


@pytest.fixture
def proxied_auth_emulator(
    auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch
) -> AuthEmulator:
    """The module's Auth emulator, with no users, behind the tests' local server for this
    test: ``app`` and ``live_server`` proxy its paths (``PACK391_AUTH_EMULATOR``, read per
    request) and their init.json says ``pack391AuthEmulator``, as under ``make run``."""
    auth_emulator.wipe()
    monkeypatch.setenv(auth_emulators.ADDRESS_ENV, auth_emulator.host)
    return auth_emulator


@pytest.fixture(scope="session")
def live_server(app: flask.Flask) -> Iterator[str]:
    """The local functions server over real HTTP (threaded), on a free port."""
    port = procs.free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    requests.get(f"{base}/__/health", timeout=5).raise_for_status()
    yield base
    server.shutdown()


def pytest_unconfigure(config: pytest.Config) -> None:
    PORT_BLOCK.release()


# ------------------------------------------------------------------ the suite's shape

COLLECTED_FLOOR_FILE = ROOT / "tests" / "collected-floor.txt"
"""The number of tests the whole suite collects at least. ``make test`` fails when it
collects fewer: tests do not drop out silently (a module that stops importing, a
parametrisation that empties). Lower it in the same commit that removes tests, saying why;
raise it when adding some."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial-lanes",
        action="store_true",
        help="with -n: the parallel phase, then the serial lanes behind a gate (make test; "
        "tests/lanes.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller of a ``--serial-lanes`` run makes the gate's path; its
    workers, started after this, inherit it."""
    from tests.lanes import GATE_ENV

    controller = not hasattr(config, "workerinput")
    if controller and config.getoption("serial_lanes") and config.getoption("numprocesses"):
        gate_dir = Path(tempfile.mkdtemp(prefix="pack391-gate-"))
        os.environ[GATE_ENV] = str(gate_dir / "parallel-phase-done")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if not config.getoption("serial_lanes"):
        return None  # xdist's own
    from tests.lanes import SerialLanes

    return SerialLanes(config, log)


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """A ``quiet`` lane test waits for the gate before its timeout's clock starts (an outer
    wrapper: pytest-timeout times inside it)."""
    from tests.lanes import lane_of_file, wait_for_gate

    if lane_of_file(item.nodeid) == "quiet":
        wait_for_gate()
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before ``-m``/``-k`` deselect anything: the whole suite (pytest run with no paths,
    as ``make test`` runs both its phases) must collect at least the floor. Each
    ``serial`` test is in its lane; the order is the scheduler's (tests/lanes.py)."""
    from tests.lanes import lane_of_item, order_key

    lanes = {item.nodeid: lane_of_item(item) for item in items}
    items.sort(key=lambda item: order_key(item, lanes[item.nodeid]))
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    floor = int(COLLECTED_FLOOR_FILE.read_text().split()[0])
    if len(items) < floor:
        raise pytest.UsageError(
            f"the suite collected {len(items)} tests, fewer than the floor of {floor} "
            f"({COLLECTED_FLOOR_FILE.relative_to(ROOT)}): a test module stopped importing "
            "or a parametrisation emptied. If tests were removed on purpose, lower the "
            "floor in the same commit."
        )
