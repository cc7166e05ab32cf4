"""The Firebase Auth emulator of firebase-tools (``tools/node_modules``) as a child of the
local stack, and where the local functions server finds it.

``node tools/node_modules/firebase-tools/lib/bin/firebase.js emulators:start --only auth
--project PROJECT --config DIR/firebase.json``, in a temporary directory ``DIR`` of its own
(its ``firebase.json``, the CLI's ``firebase-debug.log`` and, through ``TMPDIR``, the hub's
locator file ``hub-PROJECT.json``: two stacks of one project never share one). That
``firebase.json`` puts the emulator on a port of :func:`stack.platform.procs.free_port`
(``PACK391_PORT_RANGE``: parallel test processes never collide) and moves the emulator
hub and the logging port off their fixed defaults (4400, 4500) the same way, with the UI
off and ``singleProjectMode`` on.

It is slow to start: about 9-10 s of one core on this kind of machine (firebase-tools
compiles the Identity Toolkit's OpenAPI schemas before it listens), more on a busy one.
Start it beside the other children (:func:`launch_auth_emulator`, then
:meth:`stack.platform.procs.Starting.wait`), not before them. It keeps its users in memory:
a restart comes back empty.

Ready means: a listener on its port belongs to our child (:func:`procs.owns_listener`: not
another server on a reused port) and ``GET /`` answers the emulator's JSON
(``{"authEmulator": {"ready": true, ...}}``, firebase-tools' ``emulator/auth/server.js``).

Tokens it issues are unsigned (``alg: none``); firebase-admin accepts them when
``FIREBASE_AUTH_EMULATOR_HOST`` is set, and checks ``aud``/``iss`` against the project, so
start it for the project the functions run as.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from stack.platform.procs import Child, StackError, Starting, free_port, owns_listener, spawn

SOURCE_DIR = Path(__file__).resolve().parents[2]
FIREBASE_CLI = (
    SOURCE_DIR / "tools" / "node_modules" / "firebase-tools" / "lib" / "bin" / "firebase.js"
)
"""firebase-tools as ``tools/package-lock.json`` pins it (``make setup`` runs ``npm ci``)."""

CHILD_NAME = "auth-emulator"
"""Its name among the stack's children (and its log: ``LOG_DIR/auth-emulator.log``)."""

ADDRESS_ENV = "PACK391_AUTH_EMULATOR"
"""``host:port`` of the Auth emulator the local functions server proxies on its own origin
(read per request, see :func:`configured_address`; unset: those paths answer 503)."""

READY_TIMEOUT_SEC = 120.0
"""How long a start may take (about 10 s alone; minutes-long test runs share two cores)."""

PROXIED_PREFIXES = (
    "/identitytoolkit.googleapis.com/",
    "/securetoken.googleapis.com/",
    "/www.googleapis.com/identitytoolkit/",
    "/emulator/",
)
"""The paths the Firebase JS SDK calls on an emulator's origin. SDK 8.10.1's
``auth.useEmulator(url)`` prefixes each production endpoint's host and path with the
emulator's origin: ``/www.googleapis.com/identitytoolkit/v3/relyingparty/verifyPassword``
(sign-in, sign-up and account calls: SDK 8 still speaks v3, which the emulator maps to v1),
``/securetoken.googleapis.com/v1/token`` (refresh), ``/identitytoolkit.googleapis.com/v2/``
(multi-factor); the v1 API (``/identitytoolkit.googleapis.com/v1/accounts:signUp``, what
firebase-admin and SDK 9+ call) and ``/emulator/...`` (the popup's ``/emulator/auth/handler``
and ``iframe``, the emulator's own REST API) follow."""

NOT_RUNNING = (
    "the Firebase Auth emulator is not running: `make run` (pack391 serve) starts it, "
    "unless given --no-auth-emulator; for an emulator of your own, start the functions "
    f"server with {ADDRESS_ENV}=HOST:PORT"
)
"""What the proxied paths answer (503) when no emulator is configured."""


def configured_address() -> str | None:
    """``PACK391_AUTH_EMULATOR`` now (``host:port``), or None: read on every request, so a
    test can point a running server at an emulator it started."""
    return os.environ.get(ADDRESS_ENV, "").strip() or None


def node_and_cli() -> tuple[str, Path]:
    """``node`` and firebase-tools' entry point; StackError naming ``make setup`` when
    either is missing."""
    node = shutil.which("node")
    if node is None:
        raise StackError(
            "node is not on PATH: the Firebase Auth emulator (firebase-tools) needs Node.js 20+ "
            "and tools/node_modules: install Node.js, then run `make setup` "
            "(or start the stack with --no-auth-emulator)"
        )
    if not FIREBASE_CLI.is_file():
        raise StackError(
            f"{FIREBASE_CLI.relative_to(SOURCE_DIR)} is missing: the Firebase Auth emulator "
            "comes from firebase-tools in tools/node_modules: run `make setup` (npm ci in "
            "tools/), or start the stack with --no-auth-emulator"
        )
    return node, FIREBASE_CLI


def emulator_config(port: int, hub_port: int, logging_port: int) -> dict[str, object]:
    """The temporary ``firebase.json``: the Auth emulator alone, every port given."""
    return {
        "emulators": {
            "auth": {"host": "127.0.0.1", "port": port},
            "hub": {"host": "127.0.0.1", "port": hub_port},
            "logging": {"host": "127.0.0.1", "port": logging_port},
            "ui": {"enabled": False},
            "singleProjectMode": True,
        }
    }


def _child_env(home: Path) -> dict[str, str]:
    """The CLI's environment: ours without the emulator variables of the stack (it would
    take ``FIREBASE_AUTH_EMULATOR_HOST`` for a running emulator of its own) and with its
    temporary files in ``home``; no update check, no prompt."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FIREBASE_", "FIRESTORE_", "PACK391_"))
    }
    env.update(TMPDIR=str(home), NO_UPDATE_NOTIFIER="1", CI="1")
    return env


def launch_auth_emulator(
    project: str, log_dir: Path, port: int | None = None, append: bool = False
) -> tuple[Starting, str]:
    """Spawn the Auth emulator for ``project`` without waiting for it (about 10 s): its
    :class:`Starting` and ``host:port``. ``port`` (a restart's) else a free one."""
    node, cli = node_and_cli()
    port = port or free_port()
    home = Path(tempfile.mkdtemp(prefix="pack391-auth-emulator-"))
    config = home / "firebase.json"
    config.write_text(json.dumps(emulator_config(port, free_port(), free_port()), indent=2))
    argv = [
        node, str(cli), "emulators:start", "--only", "auth",
        "--project", project, "--config", str(config),
    ]  # fmt: skip
    try:
        child = spawn(CHILD_NAME, argv, log_dir, _child_env(home), home, append)
    except OSError:
        shutil.rmtree(home, ignore_errors=True)
        raise
    child.cleanup.append(home)
    host = f"127.0.0.1:{port}"

    def ready() -> bool:
        return owns_listener(child.process.pid, port) and answers(host)

    return Starting(child, ready, READY_TIMEOUT_SEC), host


def start_auth_emulator(
    project: str, log_dir: Path, port: int | None = None, append: bool = False
) -> tuple[Child, str]:
    """Start the Auth emulator and wait until it is ready: the child (``child.stop()``
    stops it and removes its directory) and its ``host:port``."""
    starting, host = launch_auth_emulator(project, log_dir, port, append)
    return starting.wait(), host


def answers(host: str, timeout: float = 1.0) -> bool:
    """Whether the Auth emulator at ``host`` says it is ready (its ``GET /`` JSON)."""
    with urllib.request.urlopen(f"http://{host}/", timeout=timeout) as response:
        if response.status != 200:
            return False
        try:
            body = json.loads(response.read())
        except ValueError:  # not the emulator (yet)
            return False
    emulator = body.get("authEmulator") if isinstance(body, dict) else None
    return isinstance(emulator, dict) and emulator.get("ready") is True


def wipe_accounts(host: str, project: str) -> None:
    """Delete every user of ``project`` in the emulator at ``host`` (its own endpoint)."""
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{project}/accounts", method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise StackError(f"wiping the Auth emulator at {host}: HTTP {response.status}")
