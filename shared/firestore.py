"""One Firestore client factory, for production and for the emulator.

Under the emulator (``FIRESTORE_EMULATOR_HOST``) the client is built with
anonymous credentials: ``firebase_admin.firestore.client()`` would look for
application-default credentials and fail. In production the firebase-admin app's
credentials are used.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import firebase_admin

from shared import thresholds
from shared.config import project_id

if TYPE_CHECKING:
    from google.cloud import firestore

_T = TypeVar("_T")


def ensure_admin_app(project: str) -> None:
    """Start firebase-admin's default app for ``project`` unless one is running already
    (``firebase_admin.get_app()`` raises ``ValueError`` when there is none)."""
    try:
        firebase_admin.get_app()
    except ValueError:
        firebase_admin.initialize_app(options={"projectId": project})


@functools.cache
def _client(project: str, emulator_host: str | None) -> firestore.Client:
    # Imported here, not at module level: a cold instance whose function never reads
    # Firestore on its first request does not load the client (and grpc) at start.
    from firebase_admin import firestore as admin_firestore
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    if emulator_host:
        return firestore.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    ensure_admin_app(project)
    client: firestore.Client = admin_firestore.client()
    return client


def get_db() -> firestore.Client:
    """The Firestore client for the configured project (cached per project/emulator)."""
    return _client(project_id(), os.environ.get("FIRESTORE_EMULATOR_HOST") or None)


def reset_clients() -> None:
    """Forget cached clients (tests that change the environment)."""
    _client.cache_clear()


def delete_matching(db: firestore.Client, query: firestore.Query, page: int = 400) -> int:
    """Delete every document ``query`` matches, a batch of ``page`` at a time; returns how
    many. Each round reads the first page of what is left (names only), so no cursor walks
    over deleted documents and a crash midway leaves nothing half-deleted in a batch."""
    deleted = 0
    while True:
        snaps = list(query.select([]).limit(page).stream())
        if not snaps:
            return deleted
        batch = db.batch()
        for snap in snaps:
            batch.delete(snap.reference)
        batch.commit()
        deleted += len(snaps)


def contended(unit: Callable[[], _T], also: tuple[type[Exception], ...] = ()) -> _T:
    """Run ``unit`` (a transaction, or a transaction and what it needs first), again after
    contention: up to ``TX_ROUNDS`` rounds with a jittered, doubling pause between them.

    Contention is ``ABORTED`` from any read, write or commit (a read that waited on another
    transaction's lock raises it before the client's own retry loop sees it), the
    client's ``ValueError`` after ``max_attempts`` aborted commits, and the exceptions of
    ``also`` (the alert store adds ``ALREADY_EXISTS``: a pointer created concurrently).
    Writers of one document that read it together retry in lockstep and abort each other
    again: the pause breaks the tie. Retrying is safe: a failed round committed nothing.
    The last round's error is raised; any other error at once."""
    from google.api_core import exceptions as gexc

    retried: tuple[type[Exception], ...] = (gexc.Aborted, ValueError, *also)
    for attempt in range(thresholds.TX_ROUNDS):
        try:
            return unit()
        except retried as exc:
            is_contention = not isinstance(exc, ValueError) or isinstance(
                exc.__cause__, gexc.Aborted
            )
            if not is_contention or attempt + 1 == thresholds.TX_ROUNDS:
                raise
            time.sleep(random.uniform(0.05, 0.25) * 2**attempt)
    raise AssertionError("unreachable: the last round re-raises")


def transact(db: firestore.Client, run: Any) -> Any:
    """``run`` (a ``@firestore.transactional`` function of one transaction) in a new
    transaction of ``db`` with ``TX_MAX_ATTEMPTS`` attempts, in :func:`contended` rounds:
    its result. Every transaction of the bundle goes through here, so contention on a hot
    document is retried, never answered as a server error."""
    return contended(lambda: run(db.transaction(max_attempts=thresholds.TX_MAX_ATTEMPTS)))
