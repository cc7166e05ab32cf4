"""Market enforcement's Redis side: the mirrors of each market's config and of the
all-markets switch, and the set of admitted users (whose size is the market's user count,
changed atomically by a script). All market keys share the hash tag ``{pack391:markets}``
so the admission script also runs on Redis Cluster (the
:class:`functions.market.ports.MarketEnforcement` port)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import redis

from functions.market.ports import EnforcementSnapshot
from shared.models.market import GlobalMarketsDoc, MarketDoc
from shared.models.slo import SloAction
from shared.redis import LUA_DIR, lua_script
from shared.slo.actions import ACTIONS_KEY, count_shadow, parse_actions

_ADMIT = LUA_DIR / "admit_member.lua"
_MIRROR = LUA_DIR / "mirror_versioned.lua"
_HYDRATE_CHUNK = 1000


class MarketEnforcementStore:
    """Redis: the mirrors and member sets that enforcement reads and updates."""

    PREFIX = "{pack391:markets}"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def _market_key(self, country: str) -> str:
        return f"{self.PREFIX}:{country}"

    def _members_key(self, country: str) -> str:
        return f"{self.PREFIX}:{country}:users"

    @property
    def _global_key(self) -> str:
        return f"{self.PREFIX}:global"

    def read(self, country: str, uid: str) -> EnforcementSnapshot:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(self._market_key(country), "doc")
        pipe.hget(self._global_key, "doc")
        pipe.sismember(self._members_key(country), uid)
        pipe.scard(self._members_key(country))
        # the budgets' actions, in the same round trip (another slot: on a cluster the
        # pipeline sends to both shards at once)
        pipe.get(ACTIONS_KEY)
        market_json, global_json, is_member, count, actions = pipe.execute()
        return EnforcementSnapshot(
            market=MarketDoc.model_validate_json(market_json) if market_json else None,
            global_switch=(
                GlobalMarketsDoc.model_validate_json(global_json) if global_json else None
            ),
            is_member=bool(is_member),
            member_count=int(count),
            slo_actions=parse_actions(actions),
        )

    def mirror_market(self, doc: MarketDoc) -> bool:
        payload = doc.model_dump_json(by_alias=True)
        stored = lua_script(_MIRROR, self._redis)(
            keys=[self._market_key(doc.country)], args=[doc.version, payload]
        )
        return bool(stored)

    def mirror_global(self, doc: GlobalMarketsDoc) -> bool:
        payload = doc.model_dump_json(by_alias=True)
        stored = lua_script(_MIRROR, self._redis)(
            keys=[self._global_key], args=[doc.version, payload]
        )
        return bool(stored)

    def invalidate_market(self, country: str) -> None:
        """Drop a market's config mirror so the next call re-reads Firestore."""
        self._redis.delete(self._market_key(country))

    def invalidate_global(self) -> None:
        self._redis.delete(self._global_key)

    def add_members(self, country: str, uids: Iterable[str]) -> int:
        added = 0
        chunk: list[str] = []
        for uid in uids:
            chunk.append(uid)
            if len(chunk) >= _HYDRATE_CHUNK:
                added += int(self._redis.sadd(self._members_key(country), *chunk))
                chunk = []
        if chunk:
            added += int(self._redis.sadd(self._members_key(country), *chunk))
        return added

    def member_count(self, country: str) -> int:
        return int(self._redis.scard(self._members_key(country)))

    def admit(
        self, country: str, uid: str, capacity: int | None, market_version: int, global_version: int
    ) -> int:
        """Run the admission script; returns an :class:`AdmitOutcome` value."""
        outcome = lua_script(_ADMIT, self._redis)(
            keys=[self._members_key(country), self._market_key(country), self._global_key],
            args=[uid, -1 if capacity is None else capacity, market_version, global_version],
        )
        return int(outcome)

    def remove_member(self, country: str, uid: str) -> None:
        self._redis.srem(self._members_key(country), uid)

    def count_slo_shadow(self, action: SloAction, now: datetime) -> None:
        count_shadow(self._redis, action, now)

    def remove_members(self, country: str, uids: Iterable[str]) -> int:
        """Take ``uids`` out of the market's set; returns how many were in it."""
        removed = 0
        chunk: list[str] = []
        for uid in uids:
            chunk.append(uid)
            if len(chunk) >= _HYDRATE_CHUNK:
                removed += int(self._redis.srem(self._members_key(country), *chunk))
                chunk = []
        if chunk:
            removed += int(self._redis.srem(self._members_key(country), *chunk))
        return removed
