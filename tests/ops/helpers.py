"""Test data shared by the ops tests."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis
import requests

from shared import collections
from shared.firestore import get_db
from shared.models.scaling import IsolationState, ServiceDoc, ServiceState
from shared.ratelimit import keys
from stack.grant import Target
from stack.grant import apply as grant
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


def staff_user(emulator: Any, backends: Any, email: str, role: str | None) -> str:
    """A user of the Auth emulator who signs in with ``email`` and the password returned:
    with ``role`` (``ops``, ``admin``) granted by ``pack391 grant``'s code (custom claim and
    audit entry), or a plain user (None) signed up as the app's users are."""
    password = "correct-horse-battery"
    if role is None:
        response = requests.post(
            f"{emulator.url}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=local-api-key",
            json={"email": email, "password": password, "returnSecureToken": True},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return password
    target = Target(
        emulator.project, emulator.host, backends.firestore_host, "the test's emulator", True
    )
    grant(target, email, role, password=password, actor="cli:test@localhost")
    return password
