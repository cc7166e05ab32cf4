"""What other areas (the ops console) read of the deploy guard: a thin read side of
``pack391_deployments``, which only the deploy guard writes.

- :func:`deployments_updated_since`: the deployments that moved since a time, each with
  its phase history (not its analyses).

Importing this module loads pydantic, not the Firestore or Google Cloud clients.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from shared import collections
from shared.models.deploy import DeploymentHistory

if TYPE_CHECKING:
    from google.cloud import firestore

_HISTORY_FIELDS = ["version", "environment", "phase", "history", "updatedAt"]
"""What is read of a deployment (its analyses, the bulk of it, are left out)."""


def deployments_updated_since(
    db: firestore.Client, since: datetime, limit: int
) -> list[DeploymentHistory]:
    """The deployments updated at or after ``since`` (every history entry appended updates
    ``updatedAt``), most recently updated first, at most ``limit``; the id is the
    document's."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        db.collection(collections.DEPLOYMENTS)
        .where(filter=FieldFilter("updatedAt", ">=", since))
        .order_by("updatedAt", direction=firestore.Query.DESCENDING)
        .limit(limit)
        .select(_HISTORY_FIELDS)
    )
    return [
        DeploymentHistory.model_validate({**(s.to_dict() or {}), "deploymentId": s.id})
        for s in query.stream()
    ]
