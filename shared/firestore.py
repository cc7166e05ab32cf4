"""One Firestore client factory, for production and for the emulator.

Under the emulator (``FIRESTORE_EMULATOR_HOST``) the client is built with
anonymous credentials: ``firebase_admin.firestore.client()`` would look for
application-default credentials and fail. In production the firebase-admin app's
credentials are used.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import firebase_admin

from shared import deadline, thresholds
from shared.config import FIRESTORE_STEP_MAX_MS, project_id
from shared.errors import DependencyUnavailable

if TYPE_CHECKING:
    from google.cloud import firestore

_T = TypeVar("_T")

DEFAULT_DATABASE = "(default)"
"""The database the bundle serves from (every other database is a restore's or a
drill's target)."""


def ensure_admin_app(project: str) -> None:
    """Start firebase-admin's default app for ``project`` unless one is running already
    (``firebase_admin.get_app()`` raises ``ValueError`` when there is none)."""
    try:
        firebase_admin.get_app()
    except ValueError:
        firebase_admin.initialize_app(options={"projectId": project})


@functools.cache
def _client(
    project: str, emulator_host: str | None, database: str = DEFAULT_DATABASE
) -> firestore.Client:
    # Imported here, not at module level: a cold instance whose function never reads
    # Firestore on its first request does not load the client (and grpc) at start.
    from google.auth.credentials import AnonymousCredentials

    from shared.firestore_budget import BudgetedClient

    # every RPC keeps the call's budget (shared.deadline): see shared.firestore_budget
    if emulator_host:
        return BudgetedClient(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            database=database,
        )
    ensure_admin_app(project)
    # what firebase_admin.firestore.client() builds: the app's credentials and project
    credentials = firebase_admin.get_app().credential.get_credential()
    return BudgetedClient(project=project, credentials=credentials, database=database)


def get_db(database: str = DEFAULT_DATABASE) -> firestore.Client:
    """The Firestore client for the configured project (cached per project/emulator and
    database; another ``database``: a restore's or a drill's target)."""
    return _client(project_id(), os.environ.get("FIRESTORE_EMULATOR_HOST") or None, database)


def reset_clients() -> None:
    """Forget cached clients (tests that change the environment)."""
    _client.cache_clear()


def newest(
    db: firestore.Client,
    collection: str,
    order_field: str,
    limit: int | None,
    *filters: tuple[str, str, Any],
    fields: list[str] | None = None,
) -> list[Any]:
    """The documents of ``collection`` matching every ``(field, op, value)`` filter, by
    ``order_field`` descending, at most ``limit`` (None: all), only ``fields`` when given:
    the read sides' one shape of a bounded "latest first" read."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    query: Any = db.collection(collection)
    for field, op, value in filters:
        query = query.where(filter=FieldFilter(field, op, value))
    query = query.order_by(order_field, direction=firestore.Query.DESCENDING)
    if limit is not None:
        query = query.limit(limit)
    if fields is not None:
        query = query.select(fields)
    return list(query.stream())


def aggregate(query: Any, **spec: tuple[str, str | None]) -> dict[str, float | None]:
    """One aggregation RPC: ``alias=("count"|"sum"|"avg", field)`` -> alias -> value."""
    agg: Any = None
    for alias, (kind, field) in spec.items():
        target = query if agg is None else agg
        if kind == "count":
            agg = target.count(alias=alias)
        elif kind == "sum":
            agg = target.sum(field, alias=alias)
        else:
            agg = target.avg(field, alias=alias)
    results = agg.get()
    return {r.alias: (None if r.value is None else float(r.value)) for r in results[0]}


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
        except DependencyUnavailable:
            raise
        except retried as exc:
            spent = _spent_budget(exc)
            if spent is not None:  # the SDK's rollback after a spent budget hides it
                raise spent from exc
            is_contention = not isinstance(exc, ValueError) or isinstance(
                exc.__cause__, gexc.Aborted
            )
            if not is_contention or attempt + 1 == thresholds.TX_ROUNDS:
                raise
            # the pause stays inside the call's budget (shared.deadline)
            deadline.sleep_within(random.uniform(0.05, 0.25) * 2**attempt, "firestore")
    raise AssertionError("unreachable: the last round re-raises")


def _spent_budget(exc: BaseException) -> DependencyUnavailable | None:
    """The spent budget behind ``exc``: a transaction the budget stopped is rolled back
    by the SDK, whose rollback then fails (no transaction id yet, or no budget left) with
    the budget's error as its context."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DependencyUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def step(what: str) -> contextlib.AbstractContextManager[deadline.Budget]:
    """The budget of one Firestore step (a read, a count, or one transaction with its
    retries): ``PACK391_FIRESTORE_STEP_MAX_MS``, never more than the call has left. A call
    with a long budget (a scheduled run sized for Cloud Run updates, a deploy step) then
    loses one step to a stalled Firestore, not its whole budget; each RPC is capped the
    same way (:mod:`shared.firestore_budget`)."""
    return deadline.budget(FIRESTORE_STEP_MAX_MS.value / 1000, what)


def transact(db: firestore.Client, run: Any) -> Any:
    """``run`` (a ``@firestore.transactional`` function of one transaction) in a new
    transaction of ``db`` with ``TX_MAX_ATTEMPTS`` attempts, in :func:`contended` rounds:
    its result. Every transaction of the bundle goes through here, so contention on a hot
    document is retried, never answered as a server error."""
    return contended(lambda: run(db.transaction(max_attempts=thresholds.TX_MAX_ATTEMPTS)))
