"""What Firebase loads: every ``pack391_*`` function under its deployed name.

firebase-admin is initialised here, at import time: callable tokens are verified
before any ``@init`` hook runs, so an app created later would reject every
signed-in call. Nothing here connects to a backend; clients are created on the
first call.

Cold start (issue 12): a function instance is started with ``FUNCTION_TARGET`` set to
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

import firebase_admin

from shared.config import project_id

if not firebase_admin._apps:
    firebase_admin.initialize_app(options={"projectId": project_id()})
from shared.options import apply_global_options  # region, VPC: before any function's import

apply_global_options()

logging.basicConfig(level=logging.INFO)

FUNCTION_AREAS: dict[str, str] = {
    # disaster recovery (issue 8)
    "pack391_backupFirestore": "functions.backup",
    "pack391_getBackupStatus": "functions.backup",
    "pack391_pollBackupExports": "functions.backup",
    "pack391_restoreDrill": "functions.backup",
    "pack391_verifyBackups": "functions.backup",
    # traffic protection (pack391-ddos)
    "pack391_checkRateLimit": "functions.ddos",
    "pack391_cleanupExpiredBlocks": "functions.ddos",
    "pack391_detectDDoS": "functions.ddos",
    "pack391_getDDoSStats": "functions.ddos",
    "pack391_liftBlock": "functions.ddos",
    "pack391_panicEscalation": "functions.ddos",
    "pack391_recordAuthFailure": "functions.ddos",
    "pack391_setAllowlist": "functions.ddos",
    "pack391_setGeoThrottle": "functions.ddos",
    "pack391_walletBruteForceShield": "functions.ddos",
    # zero-downtime deployment guard (issue 6)
    "pack391_controlDeployment": "functions.deploy_guard",
    "pack391_getDeploymentStatus": "functions.deploy_guard",
    "pack391_monitorDeployment": "functions.deploy_guard",
    "pack391_pinTraffic": "functions.deploy_guard",
    "pack391_preDeployValidator": "functions.deploy_guard",
    "pack391_reportRevisionMetrics": "functions.deploy_guard",
    "pack391_rollbackController": "functions.deploy_guard",
    "pack391_startDeployment": "functions.deploy_guard",
    # load testing (issue 5)
    "pack391_abortLoadTest": "functions.load.edges",
    "pack391_cleanupLoadTests": "functions.load.edges",
    "pack391_getLoadTestResults": "functions.load.edges",
    "pack391_runLoadTest": "functions.load.edges",
    "pack391ExecuteLoadTest": "functions.load.edges",
    "pack391JudgeDeployment": "functions.deploy_guard",
    # market soft-launch controls
    "pack391_checkMarketAccess": "functions.market",
    "pack391_emergencyPauseMarkets": "functions.market",
    "pack391_getMarketControls": "functions.market",
    "pack391_releaseMarketAdmissions": "functions.market",
    "pack391_syncMarkets": "functions.market",
    "pack391_updateMarketControl": "functions.market",
    # ops dashboard (issue 7)
    "pack391_acknowledgeAlert": "functions.ops",
    "pack391_cleanupMetrics": "functions.ops",
    "pack391_getHistoricalMetrics": "functions.ops",
    "pack391_getLiveMetrics": "functions.ops",
    "pack391_getOpsDashboard": "functions.ops",
    "pack391_updateLiveMetrics": "functions.ops",
    # auto-scaling engine (issue 4)
    "pack391_initScaling": "functions.scaling",
    "pack391_manualScale": "functions.scaling",
    "pack391_reportServiceMetrics": "functions.scaling",
    "pack391_scaleGuard": "functions.scaling",
    "pack391_serviceHealthCheck": "functions.scaling",
}
"""Every deployed function -> the area module that defines it: what a cold instance
imports for its ``FUNCTION_TARGET`` (``tests/test_coldstart.py`` checks this table
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
    # Imported by their exact names: Firebase keys functions by __name__.
    from functions.backup import (
        pack391_backupFirestore,
        pack391_getBackupStatus,
        pack391_pollBackupExports,
        pack391_restoreDrill,
        pack391_verifyBackups,
    )
    from functions.ddos import (
        pack391_checkRateLimit,
        pack391_cleanupExpiredBlocks,
        pack391_detectDDoS,
        pack391_getDDoSStats,
        pack391_liftBlock,
        pack391_panicEscalation,
        pack391_recordAuthFailure,
        pack391_setAllowlist,
        pack391_setGeoThrottle,
        pack391_walletBruteForceShield,
    )
    from functions.deploy_guard import (
        pack391_controlDeployment,
        pack391_getDeploymentStatus,
        pack391_monitorDeployment,
        pack391_pinTraffic,
        pack391_preDeployValidator,
        pack391_reportRevisionMetrics,
        pack391_rollbackController,
        pack391_startDeployment,
        pack391JudgeDeployment,
    )
    from functions.load.edges import (
        pack391_abortLoadTest,
        pack391_cleanupLoadTests,
        pack391_getLoadTestResults,
        pack391_runLoadTest,
        pack391ExecuteLoadTest,
    )
    from functions.market import (
        pack391_checkMarketAccess,
        pack391_emergencyPauseMarkets,
        pack391_getMarketControls,
        pack391_releaseMarketAdmissions,
        pack391_syncMarkets,
        pack391_updateMarketControl,
    )

    # ops dashboard (issue 7)
    from functions.ops import (
        pack391_acknowledgeAlert,
        pack391_cleanupMetrics,
        pack391_getHistoricalMetrics,
        pack391_getLiveMetrics,
        pack391_getOpsDashboard,
        pack391_updateLiveMetrics,
    )
    from functions.scaling import (
        pack391_initScaling,
        pack391_manualScale,
        pack391_reportServiceMetrics,
        pack391_scaleGuard,
        pack391_serviceHealthCheck,
    )

__all__ = [
    "pack391ExecuteLoadTest",
    "pack391JudgeDeployment",
    "pack391_abortLoadTest",
    "pack391_acknowledgeAlert",
    "pack391_backupFirestore",
    "pack391_checkMarketAccess",
    "pack391_checkRateLimit",
    "pack391_cleanupExpiredBlocks",
    "pack391_cleanupLoadTests",
    "pack391_cleanupMetrics",
    "pack391_controlDeployment",
    "pack391_detectDDoS",
    "pack391_emergencyPauseMarkets",
    "pack391_getBackupStatus",
    "pack391_getDDoSStats",
    "pack391_getDeploymentStatus",
    "pack391_getHistoricalMetrics",
    "pack391_getLiveMetrics",
    "pack391_getLoadTestResults",
    "pack391_getMarketControls",
    "pack391_getOpsDashboard",
    "pack391_initScaling",
    "pack391_liftBlock",
    "pack391_manualScale",
    "pack391_monitorDeployment",
    "pack391_panicEscalation",
    "pack391_pinTraffic",
    "pack391_pollBackupExports",
    "pack391_preDeployValidator",
    "pack391_recordAuthFailure",
    "pack391_releaseMarketAdmissions",
    "pack391_reportRevisionMetrics",
    "pack391_reportServiceMetrics",
    "pack391_restoreDrill",
    "pack391_rollbackController",
    "pack391_runLoadTest",
    "pack391_scaleGuard",
    "pack391_serviceHealthCheck",
    "pack391_setAllowlist",
    "pack391_setGeoThrottle",
    "pack391_startDeployment",
    "pack391_syncMarkets",
    "pack391_updateLiveMetrics",
    "pack391_updateMarketControl",
    "pack391_verifyBackups",
    "pack391_walletBruteForceShield",
]
