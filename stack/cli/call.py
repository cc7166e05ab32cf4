"""``pack391 token`` (an ID token the local stack accepts) and ``pack391 call`` (call a
callable on the local stack and print its result)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.config import project_id
from stack.cli import caller
from stack.platform.tokens import ROLE_CLAIMS, role_token


def add_parser(sub: Any) -> None:
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


def cmd_token(args: argparse.Namespace) -> int:
    print(role_token(project_id(), args.role, args.uid))
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"pack391 call: DATA is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        result = caller.call(caller.local(args.role, args.uid), args.name, data, args.timeout)
    except caller.CallFailed as failed:
        return caller.report(
            failed, "pack391 call", f"the local stack at {caller.local_base_url()}"
        )
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
