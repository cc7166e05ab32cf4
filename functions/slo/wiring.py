"""What the SLO edges are wired to: Firestore, Redis and the params."""

from __future__ import annotations

from collections.abc import Mapping

from functions.slo.service import SloService
from functions.slo.store import ServiceMinutes, SloStateStore
from shared.alerts.store import AlertStore
from shared.config import SLO_ADMISSIONS_PAUSE, SLO_DEPLOY_FREEZE, SLO_SHED
from shared.errors import FailedPrecondition
from shared.firestore import get_db
from shared.models.slo import ActionMode, SloAction
from shared.redis import get_redis
from shared.slo.recorder import configured_objectives
from shared.wiring import wired

MODE_PARAMS = {
    SloAction.DEPLOY_FREEZE: SLO_DEPLOY_FREEZE,
    SloAction.ADMISSIONS_PAUSE: SLO_ADMISSIONS_PAUSE,
    SloAction.SHED: SLO_SHED,
}


def configured_modes() -> Mapping[SloAction, ActionMode]:
    """Each action's mode from its param; a wrong value stops the run, naming it."""
    out = {}
    for action, param in MODE_PARAMS.items():
        raw = param.value.strip().lower()
        try:
            out[action] = ActionMode(raw)
        except ValueError:
            raise FailedPrecondition(
                f"{param.name}={param.value!r}: want one of off, shadow, enforce"
            ) from None
    return out


@wired()
def _service_for() -> SloService:
    db = get_db()
    return SloService(
        SloStateStore(db),
        ServiceMinutes(db, configured_objectives),
        get_redis(),
        AlertStore(db),
        configured_objectives,
        configured_modes,
    )


def slo_service() -> SloService:
    return _service_for()
