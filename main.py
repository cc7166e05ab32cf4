"""What Firebase loads: every ``pack391_*`` function under its deployed name.

firebase-admin is initialised here, at import time: callable tokens are verified
before any ``@init`` hook runs, so an app created later would reject every
signed-in call. Nothing here connects to a backend; clients are created on the
first call.

Cold start: a function instance is started with ``FUNCTION_TARGET`` set to
its entry point (Cloud Functions gen2 / Cloud Run functions, the Firebase emulator's
per-function workers, ``functions-framework --target``), and then only that function's
area module is imported (:data:`FUNCTION_AREAS`), so a rate-limit check never loads the
Cloud Run, Monitoring or Firestore Admin clients. Without it (``firebase deploy``'s
discovery, the local stack, the tests), or with a name this table does not know (logged),
every function is imported.
"""

from __future__ import annotations

import importlib
import logging
import os

from shared.config import project_id
from shared.firestore import ensure_admin_app

ensure_admin_app(project_id())
from shared.options import apply_global_options  # region, VPC: before any function's import

apply_global_options()

logging.basicConfig(level=logging.INFO)

FUNCTION_AREAS: dict[str, str] = {
    # disaster recovery
    "pack391_backupFirestore": "functions.backup.edges",
    "pack391_getBackupStatus": "functions.backup.edges",
    "pack391_pollBackupExports": "functions.backup.edges",
    "pack391_restoreDrill": "functions.backup.edges",
    "pack391_verifyBackups": "functions.backup.edges",
    # traffic protection (pack391-ddos)
    "pack391_checkRateLimit": "functions.ddos.edges",
    "pack391_cleanupExpiredBlocks": "functions.ddos.edges",
    "pack391_detectDDoS": "functions.ddos.edges",
    "pack391_getDDoSStats": "functions.ddos.edges",
    "pack391_liftBlock": "functions.ddos.edges",
    "pack391_panicEscalation": "functions.ddos.edges",
    "pack391_recordAuthFailure": "functions.ddos.edges",
    "pack391_setAllowlist": "functions.ddos.edges",
    "pack391_setGeoThrottle": "functions.ddos.edges",
    "pack391_walletBruteForceShield": "functions.ddos.edges",
    # zero-downtime deployment guard
    "pack391_controlDeployment": "functions.deploy_guard.edges",
    "pack391_getDeploymentStatus": "functions.deploy_guard.edges",
    "pack391_monitorDeployment": "functions.deploy_guard.edges",
    "pack391_pinTraffic": "functions.deploy_guard.edges",
    "pack391_preDeployValidator": "functions.deploy_guard.edges",
    "pack391_reportRevisionMetrics": "functions.deploy_guard.edges",
    "pack391_rollbackController": "functions.deploy_guard.edges",
    "pack391_startDeployment": "functions.deploy_guard.edges",
    # load testing
    "pack391_abortLoadTest": "functions.load.edges",
    "pack391_cleanupLoadTests": "functions.load.edges",
    "pack391_getLoadTestResults": "functions.load.edges",
    "pack391_runLoadTest": "functions.load.edges",
    "pack391ExecuteLoadTest": "functions.load.edges",
    "pack391JudgeDeployment": "functions.deploy_guard.edges",
    # market soft-launch controls
    "pack391_checkMarketAccess": "functions.market.edges",
    "pack391_emergencyPauseMarkets": "functions.market.edges",
    "pack391_getMarketControls": "functions.market.edges",
    "pack391_releaseMarketAdmissions": "functions.market.edges",
    "pack391_syncMarkets": "functions.market.edges",
    "pack391_updateMarketControl": "functions.market.edges",
    # ops dashboard
    "pack391_acknowledgeAlert": "functions.ops.edges",
    "pack391_cleanupMetrics": "functions.ops.edges",
    "pack391_getHistoricalMetrics": "functions.ops.edges",
    "pack391_getLiveMetrics": "functions.ops.edges",
    "pack391_getOpsDashboard": "functions.ops.edges",
    "pack391_getOpsLive": "functions.ops.edges",
    "pack391_getOpsTimeline": "functions.ops.edges",
    "pack391_updateLiveMetrics": "functions.ops.edges",
    # auto-scaling engine
    "pack391_initScaling": "functions.scaling.edges",
    "pack391_manualScale": "functions.scaling.edges",
    "pack391_reportServiceMetrics": "functions.scaling.edges",
    "pack391_scaleGuard": "functions.scaling.edges",
    "pack391_serviceHealthCheck": "functions.scaling.edges",
    # service-level objectives
    "pack391_evaluateSlos": "functions.slo.edges",
    "pack391_getSloStatus": "functions.slo.edges",
    "pack391_liftSloAction": "functions.slo.edges",
}
"""Every deployed function -> the edges module of its area that defines it: what a cold
instance imports for its ``FUNCTION_TARGET`` (``tests/test_coldstart.py`` checks this table
against the full import below)."""


def area_of(target: str | None) -> str | None:
    """The one area module an instance serving ``target`` needs, or None: import all.

    None when ``target`` is unset or unknown, and always under ``firebase deploy``'s
    discovery (``ADMIN_PORT`` set: the manifest server must see every function, even if
    the shell that ran the CLI happened to export a ``FUNCTION_TARGET``)."""
    if not target or os.environ.get("ADMIN_PORT"):
        return None
    return FUNCTION_AREAS.get(target)


_target = os.environ.get("FUNCTION_TARGET")
_area = area_of(_target)
if _area is not None:
    # A function instance (Cloud Functions gen2 / Cloud Run functions, the Firebase
    # emulator's worker, functions-framework --target): only its own function's area.
    globals()[str(_target)] = getattr(importlib.import_module(_area), str(_target))
else:
    if _target and not os.environ.get("ADMIN_PORT"):
        logging.getLogger("pack391").warning(
            "FUNCTION_TARGET=%r is no pack391 function: importing every function", _target
        )
    # Every function under its own name (Firebase keys functions by __name__): the
    # table above is the one list of them (tests/test_coldstart.py checks it against
    # tests/test_discovery.py's).
    for _name, _module in FUNCTION_AREAS.items():
        globals()[_name] = getattr(importlib.import_module(_module), _name)

__all__ = sorted(FUNCTION_AREAS)
