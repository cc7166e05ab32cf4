"""What the market edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

from functions.market.admission_store import AdmissionRepository
from functions.market.redis_store import MarketEnforcementStore
from functions.market.service import MarketService
from functions.market.store import MarketRepository
from shared.firestore import get_db
from shared.redis import get_redis
from shared.wiring import wired


@wired()
def _service_for() -> MarketService:
    db = get_db()
    return MarketService(
        MarketRepository(db), AdmissionRepository(db), MarketEnforcementStore(get_redis())
    )


def market_service() -> MarketService:
    """The service wired to the configured Firestore and Redis."""
    return _service_for()
