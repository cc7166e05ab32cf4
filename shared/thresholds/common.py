"""Numbers every area shares: how hard a Firestore transaction tries before its contention
reaches the caller (:func:`shared.firestore.transact`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "TX_MAX_ATTEMPTS",
    "TX_ROUNDS",
]

TX_MAX_ATTEMPTS: Final[int] = 12
"""Attempts of every transaction the bundle runs (the client's default is 5): the client
retries an aborted commit this many times, keeping its place in line. Writers of one hot
document (an alert's dedup key, the load-test admission ledger, a market's slots)
serialise on it; under contention the emulator answers "Transaction lock timeout" for
whole attempts (:func:`shared.firestore.contended`)."""

TX_ROUNDS: Final[int] = 4
"""Rounds of :data:`TX_MAX_ATTEMPTS` attempts, with a jittered, doubling pause between
rounds (0.05-0.25 s, doubling), before a transaction's contention reaches its caller."""
