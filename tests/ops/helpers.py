"""Test data shared by the ops tests."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis

from shared import collections
from shared.firestore import get_db
from shared.models.scaling import IsolationState, ServiceDoc, ServiceState
from shared.ratelimit import keys
from tests.scaling.helpers import service_config


def register_service(service_id: str, isolation: IsolationState, instances: int = 3) -> None:
    doc = ServiceDoc(
        config=service_config(service_id=service_id, cloud_run_service=service_id),
        state=ServiceState(current_instances=instances, isolation=isolation),
    )
    get_db().collection(collections.SCALING_SERVICES).document(service_id).set(doc.to_doc())


def ddos_mode_on(redis_url: str, until: datetime, reason: str) -> None:
    payload = {"untilMs": int(until.timestamp() * 1000), "reason": reason}
    redis.Redis.from_url(redis_url).set(keys.DDOS_MODE, json.dumps(payload))


def docs(collection: str) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() or {} for s in get_db().collection(collection).stream()}
