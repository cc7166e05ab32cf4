"""``python -m stack.sandbox``: serve the sandbox (see :mod:`stack.sandbox`).

``--workers 1``: this process serves. More (the default: one per core,
``PACK391_SANDBOX_WORKERS``): this process forks that many workers sharing the port and
supervises them (:mod:`stack.sandbox.workers`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

from aiohttp import web

from stack.cli.processes import sandbox_parser
from stack.platform.procs import access_log_wanted
from stack.sandbox.app import Sandbox
from stack.sandbox.reporting import functions_reporter, revision_reporter
from stack.sandbox.workers import WorkerSlot, claim_port, control_dir, supervise

log = logging.getLogger("pack391.sandbox")

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def main() -> None:
    args = sandbox_parser().parse_args()
    if args.workers <= 1:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        serve(args, args.port, None)
        return
    logging.basicConfig(
        level=logging.INFO, format=LOG_FORMAT.replace("%(name)s", "%(name)s[%(process)d]")
    )
    try:
        port = claim_port(args.host, args.port)
    except OSError as exc:
        log.error("sandbox: cannot serve on %s:%s: %s", args.host, args.port, exc)
        sys.exit(1)
    with control_dir(port) as where:

        def worker(index: int) -> None:
            serve(args, port, WorkerSlot(index, args.workers, where))

        code = supervise(args.workers, worker)
    sys.exit(code)


def serve(args: argparse.Namespace, port: int, slot: WorkerSlot | None) -> None:
    """Serve the sandbox from this process (one of several when ``slot`` is set)."""
    from shared.config import project_id
    from shared.firestore import get_db
    from stack.platform.tokens import role_token

    reporter = None
    if args.functions_url:
        hook = f"http://{args.host}:{port}/__resize"
        reporter = functions_reporter(args.functions_url, role_token(project_id(), "ops"), hook)
    revisions = None
    if args.functions_url:
        revisions = revision_reporter(args.functions_url, role_token(project_id(), "ops"))
    sandbox = Sandbox(
        get_db(),
        args.redis_url,
        reporter=reporter,
        revision_reporter=revisions,
        queue_per_instance=args.queue_per_instance,
        group_commit=args.group_commit,
        worker=slot,
    )
    log.info(
        "group commit %s%s",
        "on" if args.group_commit else "off",
        f", worker {slot.index} of {slot.count}" if slot else "",
    )
    access_log = logging.getLogger("aiohttp.access") if access_log_wanted(args.access_log) else None
    app = sandbox.app()
    listening = None
    if slot is not None:
        app.on_startup.insert(0, _stop_once_on_signal)
        listening = _listening_socket(args.host, port)
    web.run_app(
        app,
        host=None if listening else args.host,
        port=None if listening else port,
        sock=listening,
        print=None,
        access_log=access_log,
        loop=_new_loop(),
        handle_signals=slot is None,
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    """A worker's share of the port (``SO_REUSEPORT``), listening before the app starts.

    ``web.run_app`` binds its TCP site only after the app's startup hooks, and one of
    them opens the worker's control socket, through which ``/__health`` asks every
    worker: a sandbox could answer healthy while a worker's TCP listener was not bound
    yet, and the kernel then sent every new connection to the other worker. Listening
    first, the kernel queues this worker's connections from the moment it is asked about."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


async def _stop_once_on_signal(app: web.Application) -> None:
    """A worker gets SIGTERM twice when its process group is signalled (the group's, and
    the parent's forward): the first stops it gracefully, the next ones are ignored."""
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def stop(signum: int) -> None:
        if signalled:
            return
        signalled.append(signum)
        raise web.GracefulExit()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed: the sandbox's CPU per request matters, it shares the
    machine with the load generator and the emulator."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - requirements.txt pins it
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


if __name__ == "__main__":
    main()
