"""Direct reads of the stack's Firestore and Redis, after recovery: what the checks of
:mod:`stack.chaos_check` compare with the recorded history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stack.platform import datastores
from stack.platform.handle import StackHandle

# ------------------------------------------------------------------ reading state


class Backends:
    """Direct reads of the stack's Firestore and Redis (after recovery only)."""

    def __init__(self, handle: StackHandle) -> None:
        from shared.redis import client_for_url

        # never through FIRESTORE_EMULATOR_HOST: this runs inside other processes too (a
        # test session), whose own clients must keep their own emulator
        self.db = datastores.firestore_client(handle.firestore_host, handle.project)
        self.redis = client_for_url(handle.redis_url, timeout_ms=5000)  # or a cluster's

    def close(self) -> None:
        self.redis.close()
        self.db.close()

    def admissions(self, country: str) -> set[str]:
        from shared import collections as c

        ref = self.db.collection(c.MARKETS).document(country).collection(c.MARKET_ADMISSIONS)
        return {snap.id for snap in ref.stream()}

    def members(self, country: str) -> set[str]:
        raw: Any = self.redis.smembers(f"{{pack391:markets}}:{country}:users")
        return {m.decode() if isinstance(m, bytes) else str(m) for m in raw}

    def docs(self, collection: str) -> list[dict[str, Any]]:
        return [snap.to_dict() or {} for snap in self.db.collection(collection).stream()]

    def keyed(self, collection: str) -> dict[str, dict[str, Any]]:
        return {snap.id: snap.to_dict() or {} for snap in self.db.collection(collection).stream()}

    def live_snapshot(self) -> dict[str, Any] | None:
        from shared import collections as c

        snap = self.db.collection(c.OPS_METRICS).document(c.OPS_LIVE_DOC).get()
        return snap.to_dict() if snap.exists else None

    def history_ids(self) -> list[str]:
        from shared import collections as c

        return [ref.id for ref in self.db.collection(c.OPS_METRICS_HISTORY).list_documents()]

    def recent_decisions(self, since: float) -> list[dict[str, Any]]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        from shared import collections as c

        cutoff = datetime.fromtimestamp(since - 120, tz=UTC)
        query = self.db.collection(c.SCALING_DECISIONS).where(
            filter=FieldFilter("at", ">=", cutoff)
        )
        return [snap.to_dict() or {} for snap in query.stream()]
