"""What the ddos edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

from functions.ddos.redis_store import TrafficStore
from functions.ddos.service import ProtectionService
from functions.ddos.store import ProtectionRepository
from shared.alerts.store import AlertStore
from shared.config import DDOS_SHADOW_ACTIONS
from shared.firestore import get_db
from shared.ratelimit.middleware import default_limiter, front_door, geo_rules
from shared.redis import get_redis, get_telemetry_redis
from shared.wiring import wired


@wired()
def _service_for() -> ProtectionService:
    return ProtectionService(
        TrafficStore(get_redis(), get_telemetry_redis()),
        ProtectionRepository(get_db()),
        AlertStore(get_db()),
        geo_rules,
        lambda: default_limiter().blocked,
        shadow=lambda: DDOS_SHADOW_ACTIONS.value,
        ipv6_prefix=lambda: front_door().ipv6_prefix,
    )


def protection_service() -> ProtectionService:
    return _service_for()
