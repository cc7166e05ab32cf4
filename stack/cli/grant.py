"""``pack391 grant --role ops|admin EMAIL``: give a user a staff role (a custom claim,
merged with their others), or take it back with ``--revoke``, on the local stack's Auth
emulator or on a real project (``--project``), with an audit entry (:mod:`stack.grant`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

ROLES = ("ops", "admin")
"""As :data:`stack.grant.ROLES` (not imported: ``--help`` loads no work module)."""


def _email(text: str) -> str:
    from stack.grant import check_email

    try:
        return check_email(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _password(text: str) -> str:
    from stack.grant import check_password

    try:
        return check_password(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any) -> None:
    grant = sub.add_parser(
        "grant",
        help="give a user the ops or admin role (a custom claim), audited; --revoke takes it back",
        description='Set the staff role as a custom claim ({"ops": true} or {"admin": true}), '
        "keeping the user's other claims, and write an audit entry. Local stack by default "
        "(FIREBASE_AUTH_EMULATOR_HOST, else the running stack's Auth emulator): a missing "
        "user is created. --project: a real project (Application Default Credentials), "
        "where the user must have signed in once. The user signs in again (or refreshes "
        "the ID token) for the change to apply.",
    )
    grant.add_argument("email", metavar="EMAIL", type=_email, help="the user's email address")
    grant.add_argument("--role", required=True, choices=ROLES, help="the staff role")
    grant.add_argument("--revoke", action="store_true", help="remove the role's claim")
    grant.add_argument(
        "--project", help="a real Firebase project (default: the local stack's Auth emulator)"
    )
    grant.add_argument(
        "--password",
        type=_password,
        help="local stack only: the password of a user it creates (default: generated, "
        "printed once)",
    )
    grant.add_argument(
        "--reason", default=None, help='for the audit entry (default "granted with pack391 grant")'
    )
    grant.set_defaults(func=cmd_grant)


def cmd_grant(args: argparse.Namespace) -> int:
    from stack.grant import DEFAULT_REASON, GrantError, apply, local_target, project_target

    if args.project and args.password is not None:
        print(
            "pack391 grant: --password is for the local stack: a real project's users are "
            "never created here",
            file=sys.stderr,
        )
        return 2
    try:
        target = project_target(args.project) if args.project else local_target()
        outcome = apply(
            target,
            args.email,
            args.role,
            revoke=args.revoke,
            password=args.password,
            reason=args.reason or DEFAULT_REASON,
        )
    except GrantError as exc:
        print(f"pack391 grant: {exc}", file=sys.stderr)
        return exc.code
    who = f"{outcome.email} (uid {outcome.uid})"
    if outcome.created:
        secret = (
            f"password {outcome.password}  (shown this once)"
            if outcome.password
            else "the password given"
        )
        print(f"created {who} in {target.where}, email verified, with {secret}")
    elif args.password is not None:
        print(f"{who} exists in {target.where}: its password is unchanged")
    verb = "revoked" if args.revoke else "granted"
    if not outcome.changed:
        state = "does not have" if args.revoke else "already has"
        print(f"{who} {state} the {args.role} role in {target.where}: nothing changed")
        return 0
    print(f"{verb} {args.role} {'from' if args.revoke else 'to'} {who} in {target.where}")
    print(f"custom claims: {json.dumps(outcome.before)} -> {json.dumps(outcome.after)}")
    print(f"audit entry written (auth.{'revoke' if args.revoke else 'grant'}, users/{outcome.uid})")
    print(
        "the user must sign in again (or refresh the ID token: getIdToken(true)) for the "
        "change to apply; tokens issued before it keep the old claims for up to an hour"
    )
    return 0
