"""The scaling registry, read side: ``pack391_scaling_services``.

The scaling engine owns the registry and writes it (``functions.scaling.adapters.
ServiceRegistry`` extends this reader); the deploy guard's gates and the ops dashboard
only read it, through this class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared import collections
from shared.models.scaling import ServiceDoc

if TYPE_CHECKING:
    from google.cloud import firestore


class ServiceRegistryReader:
    """Every registered service (config and live state), or one by id."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _ref(self, service_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.SCALING_SERVICES).document(service_id)

    def all_services(self) -> list[ServiceDoc]:
        docs = self._db.collection(collections.SCALING_SERVICES).order_by("__name__").stream()
        return [ServiceDoc.model_validate(snap.to_dict()) for snap in docs]

    def get(self, service_id: str) -> ServiceDoc | None:
        snap = self._ref(service_id).get()
        return ServiceDoc.model_validate(snap.to_dict()) if snap.exists else None
