"""Firestore calls keep the call's budget (shared.firestore_budget), against a real
emulator that is paused (SIGSTOP) the way `pack391 chaos firestore-pause` pauses it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared import deadline
from shared.errors import DependencyUnavailable
from shared.firestore import get_db, transact
from shared.firestore_budget import BudgetedClient
from stack.platform import datastores
from tests.conftest import Backends, stop_process

SLACK_SEC = 0.5
"""What an answer may take beyond its budget: one retry pause of the client library and
the scheduling of a loaded machine."""


@pytest.fixture(scope="module")
def paused_client(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends
) -> Iterator[tuple[BudgetedClient, int]]:
    """A budgeted client on a private emulator (the tests pause it, each resuming it
    before it ends; one for the module: an emulator takes seconds to start), and its pid."""
    child, host = datastores.start_firestore_emulator(
        backends.project, tmp_path_factory.mktemp("paused-emulator")
    )
    with pytest.MonkeyPatch.context() as env:  # the client reads the host when built
        env.setenv("FIRESTORE_EMULATOR_HOST", host)
        client = BudgetedClient(
            project=backends.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    try:
        yield client, child.process.pid
    finally:
        os.kill(child.process.pid, signal.SIGCONT)
        child.stop()


def test_the_bundles_client_is_the_budgeted_one(backends: Backends) -> None:
    assert isinstance(get_db(), BudgetedClient)


def test_a_spent_budget_sends_nothing(backends: Backends) -> None:
    doc = get_db().collection("budget_test").document("a")
    doc.set({"n": 1})
    with deadline.budget(0.0, "test") as spent:
        time.sleep(0.001)
        with pytest.raises(DependencyUnavailable) as refused:
            doc.get()
    assert refused.value.dependency == "firestore"
    assert spent.waited_on == ["firestore"]
    assert refused.value.details["retryAfterSec"] > 0
    assert doc.get().to_dict() == {"n": 1}  # no budget: the call is made as before


def test_every_kind_of_call_answers_within_its_budget_while_firestore_is_paused(
    paused_client: tuple[BudgetedClient, int],
) -> None:
    client, pid = paused_client
    doc = client.collection("markets").document("BR")
    doc.set({"state": "open"})
    ops: dict[str, Callable[[], object]] = {
        "get": doc.get,
        "query": lambda: list(
            client.collection("markets").where(filter=FieldFilter("state", "==", "open")).stream()
        ),
        "set": lambda: doc.set({"state": "paused"}),
        "batch": lambda: _batch(client, doc),
        "transaction": lambda: _transaction(client, doc),
    }
    stop_process(pid)
    for name, op in ops.items():
        started = time.monotonic()
        with deadline.budget(1.0, name), pytest.raises(DependencyUnavailable) as refused:
            op()
        took = time.monotonic() - started
        assert refused.value.dependency == "firestore", name
        assert took < 1.0 + SLACK_SEC, f"{name} answered after {took:.2f}s"
    os.kill(pid, signal.SIGCONT)
    started = time.monotonic()
    with deadline.budget(10.0, "after"):
        # a write sent during the pause may still land when Firestore answers again (the
        # emulator serves what reached its socket): never a torn document, though
        assert doc.get().to_dict() in ({"state": "open"}, {"state": "paused"})
        doc.set({"state": "paused"})
        assert doc.get().to_dict() == {"state": "paused"}
    assert time.monotonic() - started < 5


def _batch(client: firestore.Client, doc: firestore.DocumentReference) -> None:
    batch = client.batch()
    batch.set(doc, {"state": "paused"})
    batch.commit()


def _transaction(client: firestore.Client, doc: firestore.DocumentReference) -> None:
    @firestore.transactional
    def run(tx: firestore.Transaction) -> None:
        snap = doc.get(transaction=tx)
        tx.update(doc, {"state": "x" + str(snap.get("state"))})

    transact(client, run)


def test_a_transaction_the_budget_stopped_is_rolled_back_once_firestore_answers(
    paused_client: tuple[BudgetedClient, int],
) -> None:
    """The SDK rolls back a transaction the budget stopped; refused under the spent budget,
    that rollback would never reach Firestore, which would keep the transaction's lock on
    the document it read until the transaction expired: the next writer after the stall
    would wait on it (and the emulator refuses to be wiped). It is sent in the background."""
    client, pid = paused_client
    doc = client.collection("markets").document("DE")
    doc.set({"n": 0})

    @firestore.transactional
    def stalled(tx: firestore.Transaction) -> None:
        snap = doc.get(transaction=tx)  # the transaction now holds the document's lock
        stop_process(pid)  # Firestore stalls before the commit
        tx.update(doc, {"n": int(snap.get("n")) + 1})

    with deadline.budget(1.0, "stalled"), pytest.raises(DependencyUnavailable):
        transact(client, stalled)
    os.kill(pid, signal.SIGCONT)

    @firestore.transactional
    def after(tx: firestore.Transaction) -> None:
        snap = doc.get(transaction=tx)
        tx.update(doc, {"n": int(snap.get("n")) + 10})

    started = time.monotonic()
    with deadline.budget(5.0, "after"):
        transact(client, after)
    assert time.monotonic() - started < 2.0  # not held by the stalled transaction's lock
    # the stalled commit may still land when Firestore answers again (it had reached the
    # emulator's socket; the client had given up): then the rollback finds it committed
    assert doc.get().to_dict() in ({"n": 10}, {"n": 11})
