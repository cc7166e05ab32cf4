"""Per-country throttle rules, read through a short in-process cache, never waiting on
Firestore longer than the rate limiter's own budget.

A request never reads Firestore itself: the whole rule set (at most one document per
country) is re-read at most once per ``GEO_CACHE_TTL_SEC`` per instance, by a
background thread that the request finding the copy stale starts; that request, and
every other, decides with the copy it has. Only an instance that has no copy yet (a
cold start, or right after this instance changed a rule) waits for the read, and then
at most ``first_wait_sec`` (the Redis budget): a slow or unreachable Firestore delays
no decision by more than that. When Firestore cannot be read, the last rules stay in
force (and none, before the first load); the read itself gives up after
``GEO_LOAD_TIMEOUT_SEC`` and is tried again after the TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from shared import collections
from shared.models.ddos import GeoThrottleDoc
from shared.ratelimit.policy import GeoRule
from shared.thresholds import GEO_CACHE_TTL_SEC, GEO_LOAD_TIMEOUT_SEC

if TYPE_CHECKING:
    from google.cloud import firestore

log = logging.getLogger("pack391.ratelimit")


class GeoRules:
    def __init__(
        self,
        db: Callable[[], firestore.Client],
        ttl_sec: float = GEO_CACHE_TTL_SEC,
        monotonic: Callable[[], float] = time.monotonic,
        first_wait_sec: float = 0.05,
        load_timeout_sec: float = GEO_LOAD_TIMEOUT_SEC,
    ) -> None:
        self._db = db
        self._ttl = ttl_sec
        self._monotonic = monotonic
        self._first_wait = first_wait_sec
        self._load_timeout = load_timeout_sec
        self._lock = threading.Lock()
        self._rules: dict[str, GeoRule] = {}
        self._loaded_at: float | None = None
        self._current = False
        """False before the first load and after :meth:`invalidate`: the next request
        waits (boundedly) for the read instead of deciding with the old copy."""
        self._refresh: threading.Thread | None = None
        self._generation = 0

    def get(self, country: str | None) -> GeoRule | None:
        if country is None:
            return None
        rules = self._rules  # the copy this request decides with, unless it had none
        if self._refresh_if_stale():
            rules = self._rules  # waited for a first (or invalidated) read: its result
        return rules.get(country)

    def invalidate(self) -> None:
        """Re-read at the next request (this instance changed a rule)."""
        with self._lock:
            self._loaded_at = None
            self._current = False
            self._generation += 1

    def wait_idle(self, timeout_sec: float = 10.0) -> None:
        """Wait for a running refresh (tests, and shutdown)."""
        thread = self._refresh
        if thread is not None:
            thread.join(timeout_sec)

    def _refresh_if_stale(self) -> bool:
        """Start a background read when the copy is stale; wait for it (at most the first
        wait) only when there is no current copy. True when it waited: a stale copy is
        decided with as it is, even when the read happens to finish first."""
        now = self._monotonic()
        loaded = self._loaded_at
        if loaded is not None and now - loaded < self._ttl:
            return False
        with self._lock:
            thread = self._refresh
            if thread is None or not thread.is_alive():
                thread = threading.Thread(
                    target=self._load,
                    args=(now, self._generation),
                    name="pack391-geo-rules",
                    daemon=True,
                )
                self._refresh = thread
                thread.start()
            current = self._current
        if not current:
            thread.join(self._first_wait)
        return not current

    def _load(self, started: float, generation: int) -> None:
        # Imported here, in the background read, not at module level: loading
        # google-api-core (and grpc) is no part of a cold instance's start.
        from google.api_core import exceptions as gexc

        try:
            snaps = self._db().collection(collections.GEO_THROTTLES).get(timeout=self._load_timeout)
            rules = {}
            for snap in snaps:
                doc = GeoThrottleDoc.model_validate(snap.to_dict())
                rules[doc.country] = GeoRule(doc.country, doc.multiplier, doc.region_cap_per_min)
            self._rules = rules
        except (gexc.GoogleAPIError, ValidationError):  # keep the last rules
            log.exception("geo throttle rules could not be loaded; keeping the last ones")
        except Exception:  # a background thread: never let it die silently
            log.exception("geo throttle rules: unexpected error; keeping the last ones")
        finally:
            with self._lock:
                if generation == self._generation:  # not invalidated meanwhile
                    self._loaded_at = started
                    self._current = True
