"""The parsers of the stack's processes, each started as ``python -m MODULE`` (by
``pack391 serve``, the platform's harness or a benchmark), one function per process.

Each entry point calls its function and parses its own ``sys.argv``; the flags are what
their starters pass. The imports stay inside the functions: a process loads only its own.
"""

from __future__ import annotations

import argparse


def latency_proxy_parser() -> argparse.ArgumentParser:
    """``python -m stack.latency_proxy``: the TCP latency proxy in front of Redis."""
    from stack import latency_proxy

    parser = argparse.ArgumentParser(description=(latency_proxy.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    return parser


def sandbox_parser() -> argparse.ArgumentParser:
    """``python -m stack.sandbox``: the load-test sandbox."""
    import os

    import stack.sandbox
    from stack.constants import LOAD_SANDBOX_QUEUE_PER_INSTANCE
    from stack.platform.procs import ACCESS_LOG_ENV
    from stack.sandbox.app import GROUP_COMMIT_ENV
    from stack.sandbox.workers import WORKERS_ENV, default_workers

    parser = argparse.ArgumentParser(description=(stack.sandbox.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--functions-url", help="base of the callables (.../PROJECT/REGION)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument(
        "--queue-per-instance",
        type=int,
        default=LOAD_SANDBOX_QUEUE_PER_INSTANCE,
        help="requests waiting per simulated instance before it sheds (503 + Retry-After)",
    )
    parser.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get(GROUP_COMMIT_ENV, "1").strip().lower() not in ("0", "false", "no"),
        help=f"coalesce concurrent Firestore writes into one commit (default on; "
        f"{GROUP_COMMIT_ENV}=0 turns it off)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help=f"log every request (or {ACCESS_LOG_ENV}=1)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help=f"server processes sharing the port (default {WORKERS_ENV}, else one per "
        "core; 1: one process, no fork)",
    )
    return parser


def frontdoor_parser() -> argparse.ArgumentParser:
    """``python -m stack.platform.frontdoor``: the local stand-in for a function's front end."""
    from stack.platform.frontdoor import (
        DEFAULT_COUNTRY_HEADER,
        DEFAULT_FORWARDING_RULE,
        DEFAULT_ORIGIN_HEADER,
        Mode,
    )

    parser = argparse.ArgumentParser(
        prog="python -m stack.platform.frontdoor",
        description=(
            "A local stand-in for the front end of a deployed function (Google's front end, "
            "an external load balancer, or Cloudflare), to try PACK391_FRONT_DOOR modes "
            "on the local stack."
        ),
    )
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.GOOGLE.value)
    parser.add_argument("--upstream", default="http://127.0.0.1:5001", help="base URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument(
        "--country",
        action="append",
        default=[],
        metavar="IP=CC",
        help="the country of a client address (repeatable)",
    )
    parser.add_argument("--country-header", default=DEFAULT_COUNTRY_HEADER)
    parser.add_argument("--forwarding-rule", default=DEFAULT_FORWARDING_RULE)
    parser.add_argument(
        "--source-address", default=None, help="connect upstream from this local address"
    )
    parser.add_argument(
        "--origin-secret",
        default=None,
        help="cloudflare mode: set the origin header to this secret, as your zone's Transform "
        "Rule does (PACK391_CLOUDFLARE_ORIGIN_SECRET)",
    )
    parser.add_argument("--origin-header", default=DEFAULT_ORIGIN_HEADER)
    return parser


def server_parser() -> argparse.ArgumentParser:
    """``python -m stack.platform.server``: the functions server of the local stack."""
    import os

    from stack.platform import server
    from stack.platform.procs import ACCESS_LOG_ENV

    parser = argparse.ArgumentParser(description=(server.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PACK391_PORT", "5001")))
    parser.add_argument(
        "--access-log", action="store_true", help=f"log every request (or {ACCESS_LOG_ENV}=1)"
    )
    return parser
