"""What Firebase loads: every ``pack391_*`` function under its deployed name.

firebase-admin is initialised here, at import time: callable tokens are verified
before any ``@init`` hook runs, so an app created later would reject every
signed-in call. Nothing here connects to a backend; clients are created on the
first call.
"""

from __future__ import annotations

import logging

import firebase_admin

from shared.config import project_id

if not firebase_admin._apps:
    firebase_admin.initialize_app(options={"projectId": project_id()})

logging.basicConfig(level=logging.INFO)

# Imported by their exact names: Firebase keys functions by __name__.
from functions.backup import (
    pack391_backupFirestore,
    pack391_getBackupStatus,
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
)
from functions.load import (
    pack391_abortLoadTest,
    pack391_cleanupLoadTests,
    pack391_executeLoadTest,
    pack391_getLoadTestResults,
    pack391_runLoadTest,
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
    "pack391_executeLoadTest",
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
    "pack391_preDeployValidator",
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
