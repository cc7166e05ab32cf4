"""Every Firestore collection the bundle reads or writes, with its document shape.

Names are the contract with ``firestore.rules``, ``firestore.indexes.json`` and
the app's other bundles: change them here and nowhere else. The shapes are the
pydantic models named beside each collection (``shared.models``).
"""

from __future__ import annotations

from typing import Final

MARKETS: Final = "pack391_markets"
"""One document per country (id: ISO 3166-1 alpha-2 code), :class:`shared.models.market.MarketDoc`.
The current config and version of a market's soft-launch controls."""

MARKET_VERSIONS: Final = "versions"
"""Subcollection of a market: ``pack391_markets/{country}/versions/{version}``, one
:class:`shared.models.market.MarketDoc` per previous version (id: the version number)."""

MARKET_ADMISSIONS: Final = "admissions"
"""Subcollection of a market: ``pack391_markets/{country}/admissions/{uid}``,
:class:`shared.models.market.AdmissionDoc`, one per user admitted at signup. The
durable record behind the market's user count (Redis holds the live set). A
soft-launch admission carries ``pendingUntil`` until activated (then ``activatedAt``);
``pack391_syncMarkets`` deletes those whose ``pendingUntil`` has passed (a range query on
that one field: the automatic single-field index serves it)."""

MARKET_MEMBERS: Final = "pack391_market_members"
"""One document per user holding a soft-launch place (id: uid),
:class:`shared.models.market.MarketMemberDoc`: the country of that place. Written and
deleted only in the transactions that record and release the admission, so one user holds
at most one soft-launch place across markets. Internal: no client reads it."""

CONFIG: Final = "pack391_config"
"""Bundle-wide switches, one document each (e.g. ``markets``:
:class:`shared.models.market.GlobalMarketsDoc`, the all-markets emergency pause)."""

CONFIG_MARKETS_DOC: Final = "markets"
"""Id of the all-markets switch document in :data:`CONFIG`."""

CONFIG_LOAD_ADMISSIONS_DOC: Final = "load_admissions"
"""Id of the load-test admission ledger in :data:`CONFIG`: ``{runs: {runId: {rps,
deadline}}}``, changed only in a transaction with the run it admits, so the global RPS
cap holds under concurrent starts."""

AUDIT_LOG: Final = "pack391_audit_log"
"""One document per admin mutation, :class:`shared.models.audit.AuditEntry`."""

# --------------------------------------------------------------------------
# Traffic protection (pack391-ddos)
# --------------------------------------------------------------------------

GEO_THROTTLES: Final = "pack391_geo_throttles"
"""One document per throttled country (id: alpha-2 code),
:class:`shared.models.ddos.GeoThrottleDoc`: the limit multiplier and region-wide cap."""

BLOCKS: Final = "pack391_blocks"
"""Mirror of the blocks held in Redis (brute-force and DDoS), for audit and stats,
:class:`shared.models.ddos.BlockDoc`. Removed by ``pack391_cleanupExpiredBlocks`` once expired."""

PANIC_PASSES: Final = "pack391_panic_passes"
"""One document per panic-pass activation, :class:`shared.models.ddos.PanicPassDoc`."""

DDOS_DETECTIONS: Final = "pack391_ddos_detections"
"""One document per detection (id: ``{minute}_{kind}``, so a re-run never duplicates),
:class:`shared.models.ddos.DetectionDoc`."""

DDOS_ALLOWLIST: Final = "pack391_ddos_allowlist"
"""Addresses and networks DDoS auto-mitigation never blocks:
:class:`shared.models.ddos.AllowlistEntryDoc`, kept with ``pack391_setAllowlist``."""

ALERTS: Final = "pack391_alerts"
"""Alerts for the ops team from every area, one model: :class:`shared.models.alerts.AlertDoc`
(source, kind, dedupKey, severity, status open -> acknowledged -> resolved, notifications).
Written only through :mod:`shared.alerts.store`; ``expireAt`` (set on resolve) for a TTL
policy."""

ALERT_KEYS: Final = "pack391_alert_keys"
"""One document per alert dedup key (id: sha1 of the key),
:class:`shared.models.alerts.AlertKeyDoc`: the id of the key's open or acknowledged alert
(None once resolved). Read and written in every raise/resolve transaction, so concurrent
raisers of one key serialise on it and one key never has two active alerts."""
# Auto-scaling -------------------------------------------------------------

SCALING_SERVICES: Final = "pack391_scaling_services"
"""One document per registered service (id: the service id such as ``api-gateway``),
:class:`shared.models.scaling.ServiceDoc`: its config (bounds, Cloud Run service, region,
health URL, queue source) and live scaling state."""

SCALING_DECISIONS: Final = "pack391_scaling_decisions"
"""One document per service per scale-guard run, and per manual scale,
:class:`shared.models.scaling.DecisionDoc`: inputs, each metric's recommendation, the
action and why, and what the platform answered."""

SCALING_EVENTS: Final = "pack391_scaling_events"
"""The isolation event log: one document per isolation change (isolated, half-open,
re-isolated, recovered), :class:`shared.models.scaling.ScalingEventDoc`; ``expireAt`` for
a TTL policy. The alert an isolation raises is in :data:`ALERTS`
(``scaling:isolation:{serviceId}``)."""

LEGACY_SCALING_ALERTS: Final = "pack391_scaling_alerts"
"""Before the one alert model (:data:`ALERTS`), the isolation event log: read only by
``pack391 migrate-alerts``, which copies it into :data:`SCALING_EVENTS`."""

# Disaster recovery: shapes in shared/models/backup.py
# --------------------------------------------------------------------------

BACKUPS: Final = "pack391_backups"
"""The backup catalog: one :class:`shared.models.backup.BackupRecord` per backup (id:
the backup id, which sorts by time). Written by ``pack391_backupFirestore``."""

BACKUP_VERIFICATIONS: Final = "pack391_backup_verifications"
"""One :class:`shared.models.backup.VerificationReport` per ``pack391_verifyBackups`` run."""

LEGACY_BACKUP_ALERTS: Final = "pack391_backup_alerts"
"""Before the one alert model, a copy of each backup alert; dropped (the alerts are in
:data:`ALERTS`, ``source: "backup"``): ``pack391 migrate-alerts --delete-old`` deletes what
is left."""

BACKUP_DRILLS: Final = "pack391_backup_drills"
"""One :class:`shared.models.backup.DrillRecord` per ``pack391_restoreDrill``."""

BACKUP_EXCLUDED: Final = (BACKUPS, BACKUP_VERIFICATIONS, LEGACY_BACKUP_ALERTS, BACKUP_DRILLS)
"""Collections a logical backup leaves out: the backup bookkeeping itself (a restore
must not bring back a stale catalog of the backups it came from)."""

# Deploy guard -------------------------------------------------------------

DEPLOYMENTS: Final = "pack391_deployments"
"""One document per deployment (id: generated), :class:`shared.models.deploy.DeploymentDoc`:
phase, step, traffic, services and revisions, recent analyses, history."""

DEPLOY_ACTIVE: Final = "pack391_deploy_active"
"""One document per environment with an active deployment (id: the environment),
``{"deploymentId"}``: created with the deployment, deleted when it ends, so a second start
in the same environment fails inside the same transaction."""

DEPLOY_REPORTS: Final = "pack391_deploy_reports"
"""One document per pre-deploy validation, :class:`shared.models.deploy.ValidationReport`."""

DEPLOY_SNAPSHOTS: Final = "pack391_deploy_snapshots"
"""One document per environment (id: the environment), a
:class:`shared.models.deploy.TrafficSnapshot`: the revision each service served before
the deploy (``pack391_pinTraffic``), which is the stable side of the next canary even
after ``firebase deploy`` moved all traffic to the new revision."""

# The app's business collections the deploy guard reads (written by the app's other
# bundles). Each event names the Cloud Run revision that served it.

PAYOUTS: Final = "payouts"
"""A payout: ``status`` (``pending``, ``completed``, ``failed``), ``createdAt``,
``revision``, ``anomaly`` (bool: amount/recipient/duplicate check failed)."""

TOKEN_TRANSACTIONS: Final = "token_transactions"
"""A token-ledger write: ``at``, ``revision``, ``mismatch`` (bool: the post-write balance
did not equal the ledger sum)."""

AUTH_EVENTS: Final = "auth_events"
"""A sign-in attempt: ``at``, ``revision``, ``failed`` (bool: rejected for a reason other
than bad credentials, i.e. the system failed)."""

WALLETS: Final = "wallets"
"""A user's wallet (id: uid): ``balance`` (int tokens)."""

WALLET_TRANSACTIONS: Final = "transactions"
"""Subcollection of a wallet: ``wallets/{uid}/transactions/{id}``, ``amount`` (signed int)."""

BUSINESS_REVISION_FIELD: Final = "revision"
"""The field naming the revision that served a business event."""

BUSINESS_RATES: Final[dict[str, tuple[str, str, str]]] = {
    "payout_anomaly": (PAYOUTS, "createdAt", "anomaly"),
    "token_mismatch": (TOKEN_TRANSACTIONS, "at", "mismatch"),
    "auth_failure": (AUTH_EVENTS, "at", "failed"),
}
"""Business rate -> (collection, time field, bad-event flag) the canary judge counts."""
# Service-level objectives: shapes in shared/models/slo.py
# --------------------------------------------------------------------------

SLI_MINUTES: Final = "pack391_sli_minutes"
"""One :class:`shared.models.slo.SliMinuteDoc` per complete minute (id: the minute,
``YYYYMMDDTHHMMZ``): requests, system failures and slow answers per callable, endpoint
class and service; ``expireAt`` (35 days) for a TTL policy. The source of
``pack391 loadtest --from-metrics``."""

SLO_STATE: Final = "pack391_slo"
"""The SLO evaluator's state, one document (:data:`SLO_STATE_DOC`),
:class:`shared.models.slo.SloStateDoc`: every scope's burn rates and 30-day budget, the
budgets' actions and their lifts. Read by the ops page and the pre-deploy gate."""

SLO_STATE_DOC: Final = "current"
"""Id of the evaluator's state document in :data:`SLO_STATE`."""
# Ops dashboard ------------------------------------------------------------

OPS_METRICS: Final = "pack391_ops_metrics"
"""The current live metrics, one document (:data:`OPS_LIVE_DOC`),
:class:`shared.models.ops.LiveSnapshotDoc`, written every minute."""

OPS_LIVE_DOC: Final = "live"
"""Id of the current snapshot in :data:`OPS_METRICS`."""

OPS_METRICS_HISTORY: Final = "pack391_ops_metrics_history"
"""One point per minute (id: the minute, ``YYYYMMDDTHHMMZ``),
:class:`shared.models.ops.HistoryPointDoc`; ``expireAt`` (30 days) for a TTL policy,
and ``pack391_cleanupMetrics`` removes older points daily."""

OPS_ALERT_RULES: Final = "pack391_ops_alert_rules"
"""One document per alert rule (id: the rule name), :class:`shared.models.ops.AlertRuleStateDoc`:
consecutive minutes the condition held and the open alert. The alerts themselves are in
:data:`ALERTS` (``source: "ops"``, dedup key ``ops:{rule}``)."""

# The app's source collections (written by the app's other bundles, read by the ops
# metrics with aggregation queries). Field names as in :mod:`shared.models.ops`.

APP_USERS: Final = "users"
"""``users/{uid}``: ``lastActiveAt`` (timestamp), ``lastPurchaseAt`` (timestamp, optional),
:class:`shared.models.ops.UserActivityDoc`."""

APP_WALLET_TRANSACTIONS: Final = "walletTransactions"
"""``walletTransactions/{id}``: ``uid``, ``type`` (``earn``|``spend``), ``amount`` (tokens,
positive), ``createdAt``; :class:`shared.models.ops.WalletTransactionDoc`."""

APP_FRAUD_ALERTS: Final = "fraudAlerts"
"""``fraudAlerts/{id}``: ``status`` (``active``|``resolved``), ``severity``
(``low``|``medium``|``high``|``critical``), ``createdAt``, ``resolvedAt``;
:class:`shared.models.ops.FraudAlertDoc`."""

APP_PAYOUTS: Final = "payouts"
"""``payouts/{id}``: ``uid``, ``status`` (``pending``|``processing``|``failed``|``paid``),
``amount``, ``createdAt``; :class:`shared.models.ops.PayoutDoc`."""

APP_SUPPORT_TICKETS: Final = "supportTickets"
"""``supportTickets/{id}``: ``status`` (``open``|``closed``), ``priority``
(``low``|``normal``|``high``|``urgent``), ``createdAt``, ``firstResponseAt``,
``responseTimeSec``; :class:`shared.models.ops.SupportTicketDoc`."""
# Load testing: shapes in shared/models/load.py
# --------------------------------------------------------------------------

LOAD_RUNS: Final = "pack391_load_runs"
"""One :class:`shared.models.load.LoadRunDoc` per load-test run (id: the run id)."""

LOAD_RUN_SHARDS: Final = "shards"
"""Subcollection of a run: ``pack391_load_runs/{runId}/shards/{shard}``, each shard's
status and progress."""

LOAD_RUN_SLICES: Final = "slices"
"""Subcollection of a run: ``pack391_load_runs/{runId}/slices/{auto}``, per-second
encoded HdrHistograms and counts one shard wrote (merged by the results)."""

LOAD_RUN_REPORT: Final = "report"
"""Subcollection of a run: ``pack391_load_runs/{runId}/report/final``, the merged
timeline, heatmap, crash map and failover log, written when the last shard ends."""

LOAD_SANDBOX_COLLECTIONS: Final = (
    "pack391_sandbox_swipes",
    "pack391_sandbox_chat_messages",
    "pack391_sandbox_payouts",
    "pack391_sandbox_purchases",
)
"""The load sandbox's synthetic data: every document carries ``loadRunId``; cleanup
deletes exactly a run's documents (its Redis keys are under ``pack391:sandbox:{runId}:``)."""
