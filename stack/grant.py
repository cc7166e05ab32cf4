"""Staff roles as Firebase Auth custom claims (``pack391 grant``): ``{"ops": true}`` or
``{"admin": true}``, which the functions read (:class:`shared.auth.Caller`), merged with
the user's other claims, never dropping one; ``revoke`` removes the role's claim alone.

Two targets (:class:`Target`):

- the local stack's Auth emulator (:func:`local_target`: ``FIREBASE_AUTH_EMULATOR_HOST``
  when set, else the running stack's state file): a missing user is created, email
  verified, with the password given or a generated one;
- a real project (:func:`project_target`, Application Default Credentials): the user must
  exist already (they sign in once first); nobody is created there.

Every change writes one audit entry (:func:`shared.audit.write_audit`; action
``auth.grant`` or ``auth.revoke``, target ``users/<uid>``, the claims before and after) to
the target's Firestore: the stack's emulator, or the project's database. Auth and
Firestore share no transaction: the claims are set first, and a failed audit write is
reported as such (:class:`GrantError`), never hidden.

Only firebase-admin's public API (``get_user_by_email``, ``create_user``,
``set_custom_user_claims``), on an app of its own; it takes the emulator from
``FIREBASE_AUTH_EMULATOR_HOST`` when its client is built, so that variable is set (or
removed, for a project) around the calls.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import secrets
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROLES = ("ops", "admin")
"""The staff roles, each a custom claim of its name set to ``true``."""

DEFAULT_REASON = "granted with pack391 grant"

MIN_PASSWORD_LENGTH = 6
"""Firebase Auth refuses shorter passwords (``WEAK_PASSWORD``)."""

AUTH_EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"

ADC_HELP = (
    "no Application Default Credentials: run `gcloud auth application-default login` "
    "(and `gcloud auth application-default set-quota-project PROJECT`), or set "
    "GOOGLE_APPLICATION_CREDENTIALS"
)

_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


class GrantError(Exception):
    """The grant could not be made; ``code`` is the command's exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def check_email(text: str) -> str:
    """``text`` as an email address (stripped); ValueError when it is not one."""
    email = text.strip()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValueError(f"not an email address: {text!r}")
    return email


def check_password(text: str) -> str:
    if len(text) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return text


def cli_actor() -> str:
    """Who runs the command, for the audit entry: ``cli:<os user>@<hostname>``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Target:
    """Where the user and the audit entry are."""

    project: str
    auth_emulator: str | None
    """``host:port`` of the Auth emulator (None: the real project's Firebase Auth)."""
    firestore_emulator: str | None
    """``host:port`` of the Firestore emulator (None: the project's database)."""
    where: str
    """How messages name it."""
    creates_users: bool = False
    """Whether a missing user is created (the local stack's emulator) or refused (a real
    project: the user signs in once first)."""


def project_target(project: str) -> Target:
    return Target(project, None, None, f"project {project}")


def local_target(state_path: Path | None = None) -> Target:
    """The local stack's Auth emulator and Firestore: ``FIREBASE_AUTH_EMULATOR_HOST`` and
    ``FIRESTORE_EMULATOR_HOST`` (with ``GCLOUD_PROJECT``) when set, else the running
    stack's (its state file, ``PACK391_STACK_STATE`` or ``.local/stack.json``)."""
    from shared.config import project_id
    from stack.platform.handle import NoStackError, StackHandle

    auth = os.environ.get(AUTH_EMULATOR_ENV, "").strip() or None
    firestore = os.environ.get("FIRESTORE_EMULATOR_HOST", "").strip() or None
    project = project_id()
    where = f"the Auth emulator at {auth} ({AUTH_EMULATOR_ENV})"
    if auth is None or firestore is None:
        try:
            handle = StackHandle.load(state_path)
        except NoStackError as exc:
            what = "no Auth emulator" if auth is None else "no Firestore for the audit entry"
            raise GrantError(
                f"{what}: {exc}; or set {AUTH_EMULATOR_ENV} and FIRESTORE_EMULATOR_HOST, or "
                "give --project PROJECT for a real project"
            ) from None
        if auth is None:
            if handle.auth_emulator_host is None:
                raise GrantError(
                    f"the running stack ({handle.path}) has no Auth emulator: it was started "
                    "with --no-auth-emulator; start it again without that flag (`make run`)"
                )
            auth, project = handle.auth_emulator_host, handle.project
            where = f"the local stack's Auth emulator at {auth}"
        firestore = firestore or handle.firestore_host
    return Target(project, auth, firestore, where, creates_users=True)


@dataclass(frozen=True)
class Outcome:
    """What :func:`apply` did."""

    uid: str
    email: str
    before: dict[str, Any]
    after: dict[str, Any]
    created: bool = False
    password: str | None = None
    """The generated password of a user it created (None: given, or not created)."""

    @property
    def changed(self) -> bool:
        return self.before != self.after


@contextlib.contextmanager
def _auth_emulator_env(host: str | None) -> Iterator[None]:
    """``FIREBASE_AUTH_EMULATOR_HOST`` set to ``host`` (removed for None) meanwhile."""
    saved = os.environ.get(AUTH_EMULATOR_ENV)
    if host is None:
        os.environ.pop(AUTH_EMULATOR_ENV, None)
    else:
        os.environ[AUTH_EMULATOR_ENV] = host
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(AUTH_EMULATOR_ENV, None)
        else:
            os.environ[AUTH_EMULATOR_ENV] = saved


def claims_after(before: dict[str, Any], role: str, revoke: bool) -> dict[str, Any]:
    """The custom claims with ``role`` granted (``role: true``) or revoked (its claim
    removed), every other claim kept."""
    if role not in ROLES:
        raise GrantError(f"unknown role {role!r}: one of {', '.join(ROLES)}", code=2)
    if revoke:
        return {key: value for key, value in before.items() if key != role}
    return {**before, role: True}


def apply(
    target: Target,
    email: str,
    role: str,
    *,
    revoke: bool = False,
    password: str | None = None,
    reason: str = DEFAULT_REASON,
    actor: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Grant (or revoke) ``role`` to the user of ``email`` in ``target`` and audit it."""
    import firebase_admin
    from firebase_admin import auth, exceptions
    from google.auth.exceptions import DefaultCredentialsError

    app = firebase_admin.initialize_app(
        options={"projectId": target.project}, name=f"pack391-grant-{uuid.uuid4().hex}"
    )
    try:
        with _auth_emulator_env(target.auth_emulator):
            outcome = _set_claims(target, email, role, revoke, password, app)
    except auth.UserNotFoundError:
        raise GrantError(_no_user(target, email, revoke)) from None
    except exceptions.FirebaseError as exc:
        raise GrantError(f"{target.where}: {exc}") from None
    except DefaultCredentialsError as exc:
        raise GrantError(f"{target.where}: {ADC_HELP}: {exc}") from None
    except ValueError as exc:  # firebase-admin's checks of its arguments
        raise GrantError(str(exc), code=2) from None
    finally:
        firebase_admin.delete_app(app)
    if outcome.changed:
        try:
            _audit(target, outcome, revoke, reason, actor or cli_actor(), now)
        except Exception as exc:
            database = target.firestore_emulator or f"project {target.project}"
            raise GrantError(
                f"the custom claims of {email} are now {outcome.after}, but the audit entry "
                f"could not be written to the Firestore at {database}: {exc}"
            ) from exc
    return outcome


def _no_user(target: Target, email: str, revoke: bool) -> str:
    if revoke:
        return f"no user {email} in {target.where}: nothing to revoke"
    return (
        f"no user {email} in {target.where}: they must sign in once first (the ops page), "
        "then run this again; a real project's users are never created here"
    )


def _set_claims(
    target: Target,
    email: str,
    role: str,
    revoke: bool,
    password: str | None,
    app: Any,
) -> Outcome:
    from firebase_admin import auth

    created, generated = False, None
    try:
        user = auth.get_user_by_email(email, app=app)
    except auth.UserNotFoundError:
        if revoke or not target.creates_users:
            raise
        if password is None:
            password = generated = secrets.token_urlsafe(12)
        user = auth.create_user(email=email, password=password, email_verified=True, app=app)
        created = True
    before = dict(user.custom_claims or {})
    after = claims_after(before, role, revoke)
    if after != before:
        auth.set_custom_user_claims(user.uid, after or None, app=app)
    return Outcome(user.uid, email, before, after, created, generated)


def _audit(
    target: Target,
    outcome: Outcome,
    revoke: bool,
    reason: str,
    actor: str,
    now: datetime | None,
) -> None:
    from shared.audit import Change, write_audit
    from shared.clock import utc_now

    if target.firestore_emulator is not None:
        from stack.platform.datastores import firestore_client

        db = firestore_client(target.firestore_emulator, target.project)
    else:
        from google.cloud import firestore

        db = firestore.Client(project=target.project)
    change = Change(
        actor_uid=actor,
        action="auth.revoke" if revoke else "auth.grant",
        reason=reason,
        request_id=f"cli-{uuid.uuid4().hex}",
        now=now or utc_now(),
    )
    batch = db.batch()
    write_audit(
        db, batch, change, target=f"users/{outcome.uid}", before=outcome.before, after=outcome.after
    )
    batch.commit()
