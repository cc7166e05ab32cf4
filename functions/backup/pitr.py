"""Point-in-time recovery settings of the database, read through the Firestore Admin API
(the :class:`functions.backup.ports.PitrReader` port): both backends report them, the
managed one always, the logical one when deployed."""

from __future__ import annotations

from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.types import Database

from functions.backup.policy import PitrState


class PitrInspector:
    """Reads point-in-time recovery settings from the database (Admin API)."""

    def __init__(self, admin: FirestoreAdminClient, database_path: str) -> None:
        self._admin = admin
        self._database_path = database_path

    def pitr_state(self) -> PitrState:
        db = self._admin.get_database(name=self._database_path)
        enabled = (
            db.point_in_time_recovery_enablement
            == Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_ENABLED
        )
        retention = db.version_retention_period
        earliest = db.earliest_version_time
        return PitrState(
            supported=True,
            enabled=enabled,
            retention_sec=retention.total_seconds() if retention else None,
            earliest_version_time=earliest if earliest and earliest.year > 1970 else None,
        )
