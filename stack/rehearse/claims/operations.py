"""The operations claims: the metrics history, the market rollout and the restore drill."""

from __future__ import annotations

from shared import thresholds as t
from stack.rehearse.claims.result import ClaimResult, not_run, rounded
from stack.rehearse.recording import Recording

HISTORY_RUN_SLACK_SEC: float = 30.0
"""A minute's metrics run is expected to have written its point this long after it began."""
HISTORY_EXPIRE_SLACK_SEC: float = 120.0
"""A history point's ``expireAt`` may differ from its minute + 30 days by this much."""


def metrics_history(rec: Recording) -> ClaimResult:
    """A history point every minute of the rehearsal, each kept 30 days (``expireAt``)."""
    title = "metrics every minute with 30-day history"
    hist = rec.docs.get("history")
    if hist is None:
        return not_run("metrics_history", title, "history")
    minutes = hist.get("minutes", [])
    # each run writes the point of the minute it ran in: every minute that began after the
    # start and at least HISTORY_RUN_SLACK_SEC before the end must have one
    first = (int(rec.started_at) // 60 + 1) * 60
    last = int(rec.ended_at - HISTORY_RUN_SLACK_SEC)
    wanted = list(range(first, last + 1, 60))
    have = {int(float(m["at"])) // 60 * 60 for m in minutes}
    gaps = [m for m in wanted if m not in have]
    keep = t.METRICS_HISTORY_RETENTION_DAYS * 86400
    short = [
        m.get("id") for m in minutes
        if m.get("expireAt") is None
        or abs(float(m["expireAt"]) - float(m["at"]) - keep) > HISTORY_EXPIRE_SLACK_SEC
    ]  # fmt: skip
    written = float(len([m for m in wanted if m in have]))
    detail = {"wantedMinutes": len(wanted), "gaps": gaps, "badExpiry": short}
    if not wanted:
        return ClaimResult(
            "metrics_history", title, False, written, "min",
            "the rehearsal was shorter than one complete minute (nothing to judge)",
            "docs history", detail,
        )  # fmt: skip
    if gaps:
        return ClaimResult(
            "metrics_history", title, False, written, "min",
            f"{len(gaps)} of {len(wanted)} minutes have no history point, first at "
            f"+{gaps[0] - rec.started_at:.0f}s "
            "(docs history; collection pack391_ops_metrics_history)",
            "docs history", detail,
        )  # fmt: skip
    if short:
        return ClaimResult(
            "metrics_history", title, False, written, "min",
            f"points not kept {t.METRICS_HISTORY_RETENTION_DAYS} days: "
            f"pack391_ops_metrics_history/{short[0]} (expireAt)",
            f"doc pack391_ops_metrics_history/{short[0]}", detail,
        )  # fmt: skip
    return ClaimResult(
        "metrics_history", title, True, written, "min",
        f"{written:.0f} of {len(wanted)} minutes written, each expiring after "
        f"{t.METRICS_HISTORY_RETENTION_DAYS} days",
        "docs history", detail,
    )  # fmt: skip


def market_rollout(rec: Recording) -> ClaimResult:
    """A market soft-launched with ``trafficLimit`` N admits exactly N of more signups,
    then goes public."""
    title = "market rollout"
    m = rec.docs.get("market")
    if m is None:
        return not_run("market_rollout", title, "market")
    limit, admitted = int(m.get("trafficLimit", -1)), int(m.get("admitted", -1))
    ref = f"doc pack391_markets/{m.get('country')}"
    detail = dict(m)
    if admitted != limit:
        return ClaimResult(
            "market_rollout", title, False, float(admitted), f"admitted of {limit}",
            f"{admitted} admitted for a limit of {limit} ({ref}; docs market.answers)", ref, detail,
        )  # fmt: skip
    if m.get("finalStatus") != "public" or not m.get("publicAdmits"):
        return ClaimResult(
            "market_rollout", title, False, float(admitted), f"admitted of {limit}",
            f"the market did not open to the public: status {m.get('finalStatus')} ({ref})",
            ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "market_rollout", title, True, float(admitted), f"admitted of {limit}",
        f"soft launch admitted exactly {limit} of {m.get('signups')} signups, then public",
        ref, detail,
    )  # fmt: skip


def restore_drill(rec: Recording) -> ClaimResult:
    title = "restore drill (RTO)"
    drill = rec.docs.get("drill")
    backup = rec.docs.get("backup")
    if drill is None or backup is None:
        return not_run("restore_drill", title, "drill")
    ref = f"doc pack391_backup_drills/{drill.get('drillId')}"
    rto = drill.get("durationSec")
    detail = {"backup": backup, "drill": drill}
    if backup.get("status") != "complete":
        return ClaimResult(
            "restore_drill", title, False, rounded(rto), "s",
            f"backup {backup.get('backupId')} is {backup.get('status')} "
            f"(doc pack391_backups/{backup.get('backupId')})",
            f"doc pack391_backups/{backup.get('backupId')}", detail,
        )  # fmt: skip
    if not drill.get("ok") or rto is None or float(rto) > t.RTO_SEC:
        return ClaimResult(
            "restore_drill", title, False, rounded(rto), "s",
            f"drill ok={drill.get('ok')} in {rto}s (RTO target {t.RTO_SEC}s; {ref})", ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "restore_drill", title, True, rounded(float(rto)), "s",
        f"{drill.get('documents')} documents restored and checked in {float(rto):.1f}s "
        f"(RTO target {t.RTO_SEC}s)",
        ref, detail,
    )  # fmt: skip
