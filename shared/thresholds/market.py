"""Market soft-launch controls (``pack391-market``, :mod:`functions.market`): admissions that
cannot be squatted and the limits of admin input.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MARKET_ADMISSION_PENDING_SEC",
    "MARKET_REASON_MAX_CHARS",
    "MARKET_RELEASE_MAX_UIDS_COUNT",
    "MARKET_RELEASE_PAGE_COUNT",
    "MARKET_UID_MAX_CHARS",
]

MARKET_REASON_MAX_CHARS: Final[int] = 500
"""Longest free-text ``reason`` an admin may attach to a market change."""

MARKET_ADMISSION_PENDING_SEC: Final[int] = 24 * 60 * 60
"""A soft-launch admission stays *pending* this long after signup: activated by the
app's backend when onboarding completes (``pack391_checkMarketAccess {activate: true,
uid}`` from a ``service: true`` caller) it is kept; not activated by then,
``pack391_syncMarkets`` releases the slot."""

MARKET_RELEASE_MAX_UIDS_COUNT: Final[int] = 500
"""Most admissions one ``pack391_releaseMarketAdmissions`` call names or releases (one
Firestore transaction with its audit entry); ``more: true`` asks for another call."""

MARKET_RELEASE_PAGE_COUNT: Final[int] = 400
"""Expired admissions ``pack391_syncMarkets`` releases per page (one transaction each)."""

MARKET_UID_MAX_CHARS: Final[int] = 128
"""Longest Firebase Auth uid (Firebase's own limit); longer ids are not users."""
