"""Per-country throttle rules, read through a short in-process cache.

A request never reads Firestore: the whole rule set (at most one document per
country) is loaded at most once per ``GEO_CACHE_TTL_SEC`` per instance, so an
admin's change applies everywhere within that time. When Firestore cannot be
read, the last rules stay in force (and none, before the first load).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import ValidationError

from shared import collections
from shared.models.ddos import GeoThrottleDoc
from shared.ratelimit.policy import GeoRule
from shared.thresholds import GEO_CACHE_TTL_SEC

log = logging.getLogger("pack391.ratelimit")


class GeoRules:
    def __init__(
        self,
        db: Callable[[], firestore.Client],
        ttl_sec: float = GEO_CACHE_TTL_SEC,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._ttl = ttl_sec
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._rules: dict[str, GeoRule] = {}
        self._loaded_at: float | None = None

    def get(self, country: str | None) -> GeoRule | None:
        if country is None:
            return None
        self._refresh_if_stale()
        return self._rules.get(country)

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def _refresh_if_stale(self) -> None:
        now = self._monotonic()
        loaded = self._loaded_at
        if loaded is not None and now - loaded < self._ttl:
            return
        with self._lock:
            if self._loaded_at is not None and now - self._loaded_at < self._ttl:
                return
            try:
                docs = self._db().collection(collections.GEO_THROTTLES).stream()
                rules = {}
                for snap in docs:
                    doc = GeoThrottleDoc.model_validate(snap.to_dict())
                    rules[doc.country] = GeoRule(
                        doc.country, doc.multiplier, doc.region_cap_per_min
                    )
                self._rules = rules
            except (gexc.GoogleAPIError, ValidationError):  # keep the last rules
                log.exception("geo throttle rules could not be loaded; keeping the last ones")
            self._loaded_at = now
