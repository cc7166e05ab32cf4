"""The logical backup's own Firestore reads (REST and a raw gRPC stub, which the client's
budget interceptor does not see) wait at most what is left of the run's budget: a paused
Firestore once held a backup run for a REST read's whole 120 s."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from functions.backup.documents import FirestoreDocuments
from shared import deadline
from shared.errors import DependencyUnavailable
from shared.firestore import get_db
from tests.backup.conftest import seed
from tests.conftest import Backends, Pauser

BUDGET_SEC = 1.0
SLACK_SEC = 1.0
"""Beyond the budget: the request's own setup and a shared 2-core machine."""


def reads(docs: FirestoreDocuments) -> dict[str, Callable[[], object]]:
    now = datetime.now(UTC)
    return {
        "rest": docs.root_collections,  # :listCollectionIds over REST
        "rest stream": lambda: list(docs.stream(now)),  # :runQuery, streamed
        "grpc stream": lambda: list(docs.stream_documents(now, within="users")),
    }


def test_each_backup_read_answers_within_the_budget_while_firestore_is_paused(
    backends: Backends, firestore_paused: Pauser
) -> None:
    seed(get_db())
    docs = FirestoreDocuments.for_environment(backends.project)
    with deadline.budget(10.0, "warm"):  # every read works, and its channel is open
        for read in reads(docs).values():
            read()
    with firestore_paused():
        for name, read in reads(docs).items():
            started = time.monotonic()
            with deadline.budget(BUDGET_SEC, name), pytest.raises(DependencyUnavailable) as out:
                read()
            took = time.monotonic() - started
            assert out.value.dependency == "firestore", name
            assert took < BUDGET_SEC + SLACK_SEC, f"{name} answered after {took:.2f}s"
