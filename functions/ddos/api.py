"""Traffic protection, read side: what the area's own stores and other areas (the ops
dashboard) read of the state ``functions.ddos`` writes.

- :func:`ddos_mode`: whether DDoS mode is on, until when and why (Redis).
- :func:`recent_detections`: the latest DDoS detections (Firestore).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from shared import collections
from shared.models.ddos import DetectionDoc
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
    from google.cloud import firestore

    query = (
        db.collection(collections.DDOS_DETECTIONS)
        .order_by("detectedAt", direction=firestore.Query.DESCENDING)
        .limit(limit)
    )
    return [DetectionDoc.model_validate(s.to_dict()) for s in query.stream()]
