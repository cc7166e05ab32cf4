"""What the gates and the judge read from other collections, in both modes.

Read-only evidence, not the deploy guard's state (that is :mod:`functions.deploy_guard.store`):

- :class:`BusinessMetrics`: payout anomalies, token mismatches and auth failures per
  revision and window (count aggregations on the collections of :mod:`shared.collections`);
- :class:`GateReader`: the scaling registry (through :mod:`functions.scaling.api`), stuck
  payouts, wallets against their ledgers, and the indexes Firestore Admin reports READY.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.scaling.api import ServiceRegistryReader
from shared import collections
from shared.firestore import step
from shared.models.deploy import RevisionWindow
from shared.models.scaling import ServiceDoc


class BusinessMetrics:
    """Payout anomalies, token mismatches and auth failures per revision and window, by
    count aggregations on the collections declared in :mod:`shared.collections`."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _count(
        self, collection: str, at_field: str, start: datetime, end: datetime, **equal: object
    ) -> int:
        query: Any = self._db.collection(collection)
        for field, value in equal.items():
            query = query.where(filter=FieldFilter(field, "==", value))
        query = query.where(filter=FieldFilter(at_field, ">=", start)).where(
            filter=FieldFilter(at_field, "<", end)
        )
        # a count that does not answer stops the judge (DependencyUnavailable), never a 0
        with step(f"count of {collection}"):
            result = query.count(alias="n").get()
        return int(result[0][0].value)

    def counts(
        self, revision: str | None, start: datetime, end: datetime
    ) -> dict[str, tuple[int, int]]:
        """Rate name -> (bad events, all events); ``revision`` None: every revision."""
        scope: dict[str, object] = (
            {} if revision is None else {collections.BUSINESS_REVISION_FIELD: revision}
        )
        out: dict[str, tuple[int, int]] = {}
        for rate, (collection, at_field, flag) in collections.BUSINESS_RATES.items():
            total = self._count(collection, at_field, start, end, **scope)
            bad = (
                self._count(collection, at_field, start, end, **scope, **{flag: True})
                if total
                else 0
            )
            out[rate] = (bad, total)
        return out

    def window(self, revision: str, start: datetime, end: datetime) -> RevisionWindow:
        c = self.counts(revision, start, end)
        return RevisionWindow(
            payouts=c["payout_anomaly"][1],
            payout_anomalies=c["payout_anomaly"][0],
            token_writes=c["token_mismatch"][1],
            token_mismatches=c["token_mismatch"][0],
            auth_attempts=c["auth_failure"][1],
            auth_failures=c["auth_failure"][0],
        )


class GateReader:
    """What the pre-deploy gates read: the scaling registry, payouts, wallets, indexes."""

    def __init__(self, db: firestore.Client, indexes: FirestoreAdminClient | None) -> None:
        self._db = db
        self._indexes = indexes
        self.business = BusinessMetrics(db)

    def services(self) -> list[ServiceDoc]:
        return ServiceRegistryReader(self._db).all_services()

    def stuck_payouts(self, older_than: datetime) -> int:
        query: Any = (
            self._db.collection(collections.PAYOUTS)
            .where(filter=FieldFilter("status", "==", "pending"))
            .where(filter=FieldFilter("createdAt", "<", older_than))
        )
        return int(query.count(alias="n").get()[0][0].value)

    def wallet_mismatches(self, sample: int) -> tuple[int, list[dict[str, int | str]]]:
        """(wallets checked, the ones whose balance is not the sum of their transactions)."""
        checked = 0
        bad: list[dict[str, int | str]] = []
        for snap in self._db.collection(collections.WALLETS).limit(sample).stream():
            checked += 1
            balance = int((snap.to_dict() or {}).get("balance", 0))
            txs = snap.reference.collection(collections.WALLET_TRANSACTIONS)
            agg: Any = txs.sum("amount", alias="s").get()
            total = int(agg[0][0].value or 0)
            if total != balance:
                bad.append({"wallet": snap.id, "balance": balance, "ledgerSum": total})
        return checked, bad

    def missing_indexes(
        self, project: str, database: str, wanted: list[dict[str, Any]]
    ) -> list[str] | None:
        """Indexes of ``firestore.indexes.json`` not READY in ``database`` (None: the
        emulator, which needs none). Indexes belong to one database: the Admin API lists
        them under ``projects/{p}/databases/{d}/collectionGroups/{c}`` (``-``: every
        collection group; https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases.collectionGroups.indexes/list)."""
        if self._indexes is None:
            return None
        parent = f"projects/{project}/databases/{database}/collectionGroups/-"
        ready: set[str] = set()
        for index in self._indexes.list_indexes(parent=parent):
            if index.state.name != "READY":
                continue
            group = index.name.split("/collectionGroups/")[1].split("/")[0]
            ready.add(_index_key(group, [(f.field_path, f.order.name) for f in index.fields]))
        missing = []
        for spec in wanted:
            fields = [
                (f["fieldPath"], f.get("order", "ASCENDING"))
                for f in spec["fields"]
                if f["fieldPath"] != "__name__"
            ]
            key = _index_key(spec["collectionGroup"], fields)
            if key not in ready:
                missing.append(key)
        return missing


def _index_key(group: str, fields: list[tuple[str, str]]) -> str:
    return f"{group}(" + ",".join(f"{p} {o}" for p, o in fields if p != "__name__") + ")"


def load_index_specs(path: Path) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = json.loads(path.read_text())["indexes"]
    return specs
