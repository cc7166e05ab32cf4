"""The live metrics from Firestore aggregation queries (``count()``, ``sum()``,
``avg()``): a fixed number of RPCs whatever the data size."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.ops.policy import start_of_day
from shared import collections, deadline, thresholds
from shared.firestore import aggregate
from shared.models.ops import (
    FraudAlerts,
    PanicActivations,
    PayoutQueue,
    SourceMetrics,
    SupportQueue,
    TokenVelocity,
)

Query = Any
"""A google-cloud-firestore query or collection reference."""


def _num(value: float | None) -> float:
    return 0.0 if value is None else value


class AggregateMetricsSource:
    """The :class:`functions.ops.ports.MetricsSource` port: every count and sum is a
    server-side aggregation (13 RPCs, run in parallel)."""

    def __init__(self, db: firestore.Client, workers: int = 8) -> None:
        self._db = db
        self._workers = workers

    def _col(self, name: str) -> Query:
        return self._db.collection(name)

    def queries(self, now: datetime) -> dict[str, Callable[[], dict[str, float | None]]]:
        """Name -> one aggregation RPC (the benchmark counts these)."""
        c = self._col
        active_since = now - timedelta(minutes=thresholds.ACTIVE_USER_WINDOW_MIN)
        paying_since = now - timedelta(days=thresholds.PAYING_USER_WINDOW_DAYS)
        tx_since = now - timedelta(minutes=thresholds.TOKEN_VELOCITY_WINDOW_MIN)
        resp_since = now - timedelta(hours=thresholds.SUPPORT_RESPONSE_WINDOW_HOURS)
        day = start_of_day(now)
        users, tx = c(collections.APP_USERS), c(collections.APP_WALLET_TRANSACTIONS)
        fraud, payouts = c(collections.APP_FRAUD_ALERTS), c(collections.APP_PAYOUTS)
        tickets, passes = c(collections.APP_SUPPORT_TICKETS), c(collections.PANIC_PASSES)

        def w(q: Query, field: str, op: str, value: Any) -> Query:
            return q.where(filter=FieldFilter(field, op, value))

        return {
            "active": lambda: aggregate(
                w(users, "lastActiveAt", ">=", active_since), n=("count", None)
            ),
            "paying": lambda: aggregate(
                w(users, "lastPurchaseAt", ">=", paying_since), n=("count", None)
            ),
            "earned": lambda: aggregate(
                w(w(tx, "type", "==", "earn"), "createdAt", ">=", tx_since),
                n=("count", None),
                s=("sum", "amount"),
            ),
            "spent": lambda: aggregate(
                w(w(tx, "type", "==", "spend"), "createdAt", ">=", tx_since),
                n=("count", None),
                s=("sum", "amount"),
            ),
            "fraud_active": lambda: aggregate(
                w(fraud, "status", "==", "active"), n=("count", None)
            ),
            "fraud_critical": lambda: aggregate(
                w(w(fraud, "status", "==", "active"), "severity", "==", "critical"),
                n=("count", None),
            ),
            "fraud_resolved": lambda: aggregate(
                w(w(fraud, "status", "==", "resolved"), "resolvedAt", ">=", day), n=("count", None)
            ),
            "payout_pending": lambda: aggregate(
                w(payouts, "status", "==", "pending"), n=("count", None), s=("sum", "amount")
            ),
            "payout_processing": lambda: aggregate(
                w(payouts, "status", "==", "processing"), n=("count", None), s=("sum", "amount")
            ),
            "payout_failed": lambda: aggregate(
                w(payouts, "status", "==", "failed"), n=("count", None)
            ),
            "support_open": lambda: aggregate(
                w(tickets, "status", "==", "open"), n=("count", None)
            ),
            "support_urgent": lambda: aggregate(
                w(w(tickets, "status", "==", "open"), "priority", "==", "urgent"), n=("count", None)
            ),
            "support_response": lambda: aggregate(
                w(tickets, "firstResponseAt", ">=", resp_since), a=("avg", "responseTimeSec")
            ),
            "panic_24h": lambda: aggregate(
                w(passes, "grantedAt", ">=", now - timedelta(hours=24)), n=("count", None)
            ),
            "panic_active": lambda: aggregate(w(passes, "expiresAt", ">", now), n=("count", None)),
        }

    def counts(self, now: datetime) -> SourceMetrics:
        """Every aggregation, or none: one that does not answer within the run's budget
        raises (:class:`~shared.errors.DependencyUnavailable`), so no count it could not
        read is ever answered as a 0. The budget is carried into the pool's threads
        (:func:`shared.deadline.in_context`): without it their RPCs would wait for the
        client library's own deadlines, minutes past the run's minute."""
        jobs = self.queries(now)
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            futures = {name: pool.submit(deadline.in_context(job)) for name, job in jobs.items()}
            r = {name: future.result() for name, future in futures.items()}
        earned, spent = _num(r["earned"]["s"]), _num(r["spent"]["s"])
        tx_count = _num(r["earned"]["n"]) + _num(r["spent"]["n"])
        return SourceMetrics(
            active_users=int(_num(r["active"]["n"])),
            paying_users=int(_num(r["paying"]["n"])),
            token_velocity=TokenVelocity(
                earned=earned,
                spent=spent,
                net=earned - spent,
                transactions_per_minute=tx_count / thresholds.TOKEN_VELOCITY_WINDOW_MIN,
            ),
            fraud_alerts=FraudAlerts(
                active=int(_num(r["fraud_active"]["n"])),
                critical=int(_num(r["fraud_critical"]["n"])),
                resolved_today=int(_num(r["fraud_resolved"]["n"])),
            ),
            payout_queue=PayoutQueue(
                pending=int(_num(r["payout_pending"]["n"])),
                processing=int(_num(r["payout_processing"]["n"])),
                failed=int(_num(r["payout_failed"]["n"])),
                total_amount=_num(r["payout_pending"]["s"]) + _num(r["payout_processing"]["s"]),
            ),
            support_queue=SupportQueue(
                open=int(_num(r["support_open"]["n"])),
                urgent=int(_num(r["support_urgent"]["n"])),
                avg_response_time=r["support_response"]["a"],
            ),
            panic_activations=PanicActivations(
                last24h=int(_num(r["panic_24h"]["n"])), active=int(_num(r["panic_active"]["n"]))
            ),
        )
