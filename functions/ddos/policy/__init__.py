"""The ddos area's pure policy, by concern: :mod:`.detection` (what the traffic shows),
:mod:`.mitigation` (what to do about it, within the blast-radius cap) and :mod:`.alerts`
(what to raise and resolve). Every name is re-exported here, so ``policy.detect`` reads
as one policy."""

from __future__ import annotations

from functions.ddos.policy.alerts import (
    BRUTE_FORCE_HELD_ALERT_KEY,
    MODE_ALERT_KEY,
    RedisMemory,
    brute_force_held_alert,
    cleared_alerts,
    detection_alert,
    detection_alert_key,
    mode_alert,
    redis_memory_alert_key,
    redis_memory_changes,
)
from functions.ddos.policy.detection import (
    Baseline,
    Detection,
    MinuteTraffic,
    baseline_of,
    detect,
    merge,
    minutes_back,
    usual_shares,
)
from functions.ddos.policy.mitigation import (
    ACTION_KINDS,
    GLOBAL_KINDS,
    AddressUsers,
    MitigationAction,
    MitigationPlan,
    block_doc,
    ddos_mode_blast_radius_pct,
    not_taken,
    percent_of,
    plan_mitigation,
)

__all__ = [
    "ACTION_KINDS",
    "BRUTE_FORCE_HELD_ALERT_KEY",
    "GLOBAL_KINDS",
    "MODE_ALERT_KEY",
    "AddressUsers",
    "Baseline",
    "Detection",
    "MinuteTraffic",
    "MitigationAction",
    "MitigationPlan",
    "RedisMemory",
    "baseline_of",
    "block_doc",
    "brute_force_held_alert",
    "cleared_alerts",
    "ddos_mode_blast_radius_pct",
    "detect",
    "detection_alert",
    "detection_alert_key",
    "merge",
    "minutes_back",
    "mode_alert",
    "not_taken",
    "percent_of",
    "plan_mitigation",
    "redis_memory_alert_key",
    "redis_memory_changes",
    "usual_shares",
]
