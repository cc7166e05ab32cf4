"""Traffic protection, read side: what the area's own stores and other areas (the ops
dashboard) read of the state ``functions.ddos`` writes.

- :func:`ddos_mode`: whether DDoS mode is on, until when and why (Redis).
- :func:`recent_detections`, :func:`detections_since`: DDoS detections (Firestore).
- :func:`active_blocks`, :func:`blocks_since`: the mirrors of the blocks Redis holds
  (Firestore).
- :func:`allowlist`: the addresses and networks auto-mitigation never blocks (Firestore).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import redis

from shared import collections
from shared.firestore import newest
from shared.models.ddos import AllowlistEntryDoc, BlockDoc, DetectionDoc
from shared.ratelimit import keys

if TYPE_CHECKING:
    from google.cloud import firestore


@dataclass(frozen=True)
class DDoSMode:
    """DDoS mode is on until ``until_ms`` (epoch milliseconds), for ``reason``."""

    until_ms: int
    reason: str
    evidence: dict[str, Any]


def ddos_mode(client: redis.Redis) -> DDoSMode | None:
    """DDoS mode as Redis holds it (None: off; the key expires when the period ends)."""
    raw = client.get(keys.DDOS_MODE)
    if not raw:
        return None
    data = json.loads(cast(str, raw))
    return DDoSMode(int(data["untilMs"]), str(data["reason"]), dict(data.get("evidence") or {}))


def recent_detections(db: firestore.Client, limit: int = 20) -> list[DetectionDoc]:
    """The newest ``limit`` detections, newest first."""
    found = newest(db, collections.DDOS_DETECTIONS, "detectedAt", limit)
    return [DetectionDoc.model_validate(s.to_dict()) for s in found]


def detections_since(db: firestore.Client, since: datetime, limit: int) -> list[DetectionDoc]:
    """The detections made at or after ``since``, newest first, at most ``limit``."""
    at = ("detectedAt", ">=", since)
    found = newest(db, collections.DDOS_DETECTIONS, "detectedAt", limit, at)
    return [DetectionDoc.model_validate(s.to_dict()) for s in found]


def active_blocks(db: firestore.Client, now: datetime, limit: int = 100) -> list[BlockDoc]:
    """The mirrors of the blocks still in force at ``now`` (a lifted one ends at once),
    latest expiry first, at most ``limit``."""
    found = newest(db, collections.BLOCKS, "expiresAt", limit, ("expiresAt", ">", now))
    return [BlockDoc.model_validate(s.to_dict()) for s in found]


def blocks_since(db: firestore.Client, since: datetime, limit: int) -> list[BlockDoc]:
    """The mirrors of the blocks made at or after ``since``, newest first, at most
    ``limit`` (expired mirrors are deleted hourly by ``pack391_cleanupExpiredBlocks``)."""
    found = newest(db, collections.BLOCKS, "blockedAt", limit, ("blockedAt", ">=", since))
    return [BlockDoc.model_validate(s.to_dict()) for s in found]


def allowlist(db: firestore.Client, limit: int | None = None) -> list[AllowlistEntryDoc]:
    """The allowlist by entry (the first ``limit`` when given)."""
    query = db.collection(collections.DDOS_ALLOWLIST).order_by("entry")
    if limit is not None:
        query = query.limit(limit)
    return [AllowlistEntryDoc.model_validate(s.to_dict()) for s in query.stream()]
