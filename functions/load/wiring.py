"""What the load edges are wired to: the implementations (local or Google Cloud, chosen
by params), built once per client and setting (:func:`shared.wiring.wired`)."""

from __future__ import annotations

import os

from functions.load.gcp import TaskQueueDispatcher
from functions.load.local import LocalProcessDispatcher
from functions.load.policy import parse_allowlist
from functions.load.ports import Dispatcher
from functions.load.service import LoadPorts, LoadService
from functions.load.store import (
    AbortFlags,
    FailoverLog,
    LoadAdmissions,
    LoadRunRepository,
    SliMinuteReader,
    SyntheticData,
)
from shared.config import FUNCTIONS_REGION, LOAD_DISPATCHER, LOAD_TARGET_ALLOWLIST, is_emulated
from shared.firestore import get_db
from shared.redis import get_redis
from shared.wiring import backend_choice, wired

DEFAULT_LOCAL_TARGET = f"http://127.0.0.1:{os.environ.get('PACK391_SANDBOX_PORT', '5002')}"
"""Where the local stack serves the sandbox (``pack391 serve``)."""

DISPATCHERS = ("tasks", "local")
"""Where shards run: Cloud Tasks (deployed) or local processes (``auto`` under the emulators)."""


def _dispatcher() -> Dispatcher:
    if backend_choice("PACK391_LOAD_DISPATCHER", LOAD_DISPATCHER.value, DISPATCHERS) == "local":
        return LocalProcessDispatcher()
    return TaskQueueDispatcher(FUNCTIONS_REGION.value)


@wired()
def _service_for(dispatcher: str, allowlist: str) -> LoadService:
    del dispatcher  # cache key: a new setting gets a new service
    db, client = get_db(), get_redis()
    return LoadService(
        LoadPorts(
            runs=LoadRunRepository(db),
            admissions=LoadAdmissions(db),
            aborts=AbortFlags(client),
            dispatcher=_dispatcher(),
            failover=FailoverLog(db, client),
            synthetic=SyntheticData(db, client),
            allowlist=parse_allowlist(allowlist),
            local_mode=is_emulated(),
            default_target=DEFAULT_LOCAL_TARGET,
            minutes=SliMinuteReader(db),
        )
    )


def load_service() -> LoadService:
    """The service wired to the configured Firestore, Redis and dispatcher."""
    return _service_for(LOAD_DISPATCHER.value, LOAD_TARGET_ALLOWLIST.value)
