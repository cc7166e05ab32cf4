"""How the edges wire their services: one backend choice, one cache of wired services.

Every area's edge builds its service from the configured clients and settings once per
instance, and builds it again when a client or a setting changes (tests point the
process at a new emulator; the CLI changes the configuration). That rule lives here, not
in a copy per area.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Final, Protocol, TypeVar

from shared.config import is_emulated
from shared.errors import FailedPrecondition

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

BACKENDS: Final = ("gcp", "local")
"""Where an area's platform calls go: Google Cloud, or the local stack's stand-ins."""


def backend_choice(param: str, configured: str, choices: tuple[str, ...] = BACKENDS) -> str:
    """The backend ``param`` selects: ``auto`` is ``local`` under the emulators and the
    first choice (``gcp``) deployed; anything else must be one of ``choices``."""
    value = configured.strip().lower()
    if value == "auto":
        return "local" if is_emulated() else choices[0]
    if value not in choices:
        allowed = ", ".join(("auto", *choices))
        raise FailedPrecondition(f"{param} must be {allowed}: {configured!r}")
    return value


class Wired(Protocol[T_co]):
    """A wired-service getter: call it with the settings; forget with ``cache_clear``."""

    def __call__(self, *settings: Hashable) -> T_co: ...

    def cache_clear(self) -> None: ...


def wired(*, redis: bool = True) -> Callable[[Callable[..., T]], Wired[T]]:
    """Decorate ``build(*settings) -> service``: the result is cached per Firestore client,
    per Redis client (when ``redis``) and per settings, so a new client or a new setting
    gets a new service and everything else shares one. ``build`` reads the clients
    itself (``get_db()``, ``get_redis()``); the settings are its arguments."""

    def decorate(build: Callable[..., T]) -> Wired[T]:
        @functools.cache
        def cached(db_id: int, redis_id: int, *settings: Hashable) -> T:
            del db_id, redis_id  # cache key only
            return build(*settings)

        def get(*settings: Hashable) -> T:
            from shared.firestore import get_db

            redis_id = 0
            if redis:
                from shared.redis import get_redis

                redis_id = id(get_redis())
            return cached(id(get_db()), redis_id, *settings)

        get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        functools.update_wrapper(get, build)
        return get  # type: ignore[return-value]

    return decorate
