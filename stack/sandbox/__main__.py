"""``python -m stack.sandbox``: serve the sandbox (see :mod:`stack.sandbox`)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from stack.cli.processes import sandbox_parser
from stack.platform.procs import access_log_wanted
from stack.sandbox.app import Sandbox
from stack.sandbox.reporting import functions_reporter, revision_reporter

log = logging.getLogger("pack391.sandbox")


def main() -> None:
    from shared.config import project_id
    from shared.firestore import get_db
    from stack.platform.tokens import role_token

    args = sandbox_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    reporter = None
    if args.functions_url:
        hook = f"http://{args.host}:{args.port}/__resize"
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
    )
    log.info("group commit %s", "on" if args.group_commit else "off")
    access_log = logging.getLogger("aiohttp.access") if access_log_wanted(args.access_log) else None
    web.run_app(
        sandbox.app(),
        host=args.host,
        port=args.port,
        print=None,
        access_log=access_log,
        loop=_new_loop(),
    )


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
