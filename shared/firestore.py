"""One Firestore client factory, for production and for the emulator.

Under the emulator (``FIRESTORE_EMULATOR_HOST``) the client is built with
anonymous credentials: ``firebase_admin.firestore.client()`` would look for
application-default credentials and fail. In production the firebase-admin app's
credentials are used.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import firebase_admin

from shared.config import project_id

if TYPE_CHECKING:
    from google.cloud import firestore


@functools.cache
def _client(project: str, emulator_host: str | None) -> firestore.Client:
    # Imported here, not at module level: a cold instance whose function never reads
    # Firestore on its first request does not load the client (and grpc) at start.
    from firebase_admin import firestore as admin_firestore
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    if emulator_host:
        return firestore.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    if not firebase_admin._apps:
        firebase_admin.initialize_app(options={"projectId": project})
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
