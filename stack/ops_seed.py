"""Seed the app's source collections with known counts (tests, the benchmark, demos).

Writes go in batches of 500 (Firestore's batch limit). :class:`SeedSpec` says how many
documents of each kind; :func:`expected` is what the live metrics must then show.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from shared import collections

BATCH_DOCS = 500


@dataclass(frozen=True)
class SeedSpec:
    active_users: int = 7
    """Active within the window; ``paying_users`` of them bought within 30 days."""
    paying_users: int = 3
    idle_users: int = 4
    """Last active two hours ago (not counted)."""
    earn_tx: int = 6
    earn_amount: float = 10.0
    spend_tx: int = 4
    spend_amount: float = 2.5
    old_tx: int = 5
    """Two hours old: outside the velocity window."""
    fraud_active: int = 4
    fraud_critical: int = 6
    """Active and critical (counted in ``active`` too)."""
    fraud_resolved_today: int = 2
    fraud_resolved_before: int = 3
    payouts_pending: int = 5
    payouts_processing: int = 2
    payouts_failed: int = 11
    payouts_paid: int = 9
    payout_amount: float = 100.0
    tickets_open: int = 8
    tickets_urgent: int = 3
    """Open and urgent (counted in ``open`` too)."""
    tickets_closed: int = 5
    """Closed, answered 1 hour ago after ``response_sec`` seconds."""
    response_sec: float = 600.0


def scaled(total: int) -> SeedSpec:
    """A spec of about ``total`` documents spread over the five collections."""
    k = max(total // 100, 1)
    return SeedSpec(
        active_users=8 * k,
        paying_users=3 * k,
        idle_users=12 * k,
        earn_tx=15 * k,
        spend_tx=10 * k,
        old_tx=15 * k,
        fraud_active=2 * k,
        fraud_critical=1 * k,
        fraud_resolved_today=1 * k,
        fraud_resolved_before=1 * k,
        payouts_pending=5 * k,
        payouts_processing=3 * k,
        payouts_failed=1 * k,
        payouts_paid=6 * k,
        tickets_open=8 * k,
        tickets_urgent=1 * k,
        tickets_closed=8 * k,
    )


def documents(spec: SeedSpec, now: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    """(collection, document) pairs for ``spec``."""
    minute_ago, hours_ago = now - timedelta(minutes=1), now - timedelta(hours=2)
    for i in range(spec.active_users):
        doc: dict[str, Any] = {"lastActiveAt": minute_ago}
        if i < spec.paying_users:
            doc["lastPurchaseAt"] = now - timedelta(days=2)
        yield collections.APP_USERS, doc
    for _ in range(spec.idle_users):
        yield collections.APP_USERS, {"lastActiveAt": hours_ago}
    for kind, n, amount in (
        ("earn", spec.earn_tx, spec.earn_amount),
        ("spend", spec.spend_tx, spec.spend_amount),
    ):
        for _ in range(n):
            yield (
                collections.APP_WALLET_TRANSACTIONS,
                {"uid": "u", "type": kind, "amount": amount, "createdAt": minute_ago},
            )
    for _ in range(spec.old_tx):
        yield (
            collections.APP_WALLET_TRANSACTIONS,
            {"uid": "u", "type": "earn", "amount": 1000.0, "createdAt": hours_ago},
        )
    fraud = collections.APP_FRAUD_ALERTS
    for _ in range(spec.fraud_active):
        yield fraud, {"status": "active", "severity": "high", "createdAt": minute_ago}
    for _ in range(spec.fraud_critical):
        yield fraud, {"status": "active", "severity": "critical", "createdAt": minute_ago}
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(spec.fraud_resolved_today):
        yield fraud, {"status": "resolved", "severity": "low", "createdAt": day, "resolvedAt": now}
    for _ in range(spec.fraud_resolved_before):
        before = day - timedelta(hours=1)
        yield (
            fraud,
            {"status": "resolved", "severity": "low", "createdAt": before, "resolvedAt": before},
        )
    for status, n in (
        ("pending", spec.payouts_pending),
        ("processing", spec.payouts_processing),
        ("failed", spec.payouts_failed),
        ("paid", spec.payouts_paid),
    ):
        for _ in range(n):
            yield (
                collections.APP_PAYOUTS,
                {
                    "uid": "u",
                    "status": status,
                    "amount": spec.payout_amount,
                    "createdAt": minute_ago,
                },
            )
    tickets = collections.APP_SUPPORT_TICKETS
    for i in range(spec.tickets_open):
        priority = "urgent" if i < spec.tickets_urgent else "normal"
        yield tickets, {"status": "open", "priority": priority, "createdAt": minute_ago}
    for _ in range(spec.tickets_closed):
        answered = now - timedelta(hours=1)
        yield (
            tickets,
            {
                "status": "closed",
                "priority": "normal",
                "createdAt": answered - timedelta(seconds=spec.response_sec),
                "firstResponseAt": answered,
                "responseTimeSec": spec.response_sec,
            },
        )


def seed(db: firestore.Client, spec: SeedSpec, now: datetime) -> int:
    """Write ``spec``'s documents in batches of 500; returns how many."""
    batch, pending, written = db.batch(), 0, 0
    for name, doc in documents(spec, now):
        batch.set(db.collection(name).document(), doc)
        pending += 1
        if pending == BATCH_DOCS:
            batch.commit()
            written += pending
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()
        written += pending
    return written


def expected(spec: SeedSpec, window_min: int) -> dict[str, float]:
    """The flattened live metrics ``spec`` must give (source numbers only)."""
    earned = spec.earn_tx * spec.earn_amount
    spent = spec.spend_tx * spec.spend_amount
    return {
        "activeUsers": spec.active_users,
        "payingUsers": spec.paying_users,
        "tokenVelocity.earned": earned,
        "tokenVelocity.spent": spent,
        "tokenVelocity.net": earned - spent,
        "tokenVelocity.transactionsPerMinute": (spec.earn_tx + spec.spend_tx) / window_min,
        "fraudAlerts.active": spec.fraud_active + spec.fraud_critical,
        "fraudAlerts.critical": spec.fraud_critical,
        "fraudAlerts.resolvedToday": spec.fraud_resolved_today,
        "payoutQueue.pending": spec.payouts_pending,
        "payoutQueue.processing": spec.payouts_processing,
        "payoutQueue.failed": spec.payouts_failed,
        "payoutQueue.totalAmount": (spec.payouts_pending + spec.payouts_processing)
        * spec.payout_amount,
        "supportQueue.open": spec.tickets_open,
        "supportQueue.urgent": spec.tickets_urgent,
        "supportQueue.avgResponseTime": spec.response_sec,
    }
