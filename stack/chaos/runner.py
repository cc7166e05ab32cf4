"""The chaos run: each fault of :mod:`stack.chaos.faults` applied during a load run
(:func:`run_fault`), then the invariants of :mod:`stack.chaos_check` checked over the
recorded history; :func:`run_chaos` runs every fault in turn and writes the report."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from stack import chaos_check as cc
from stack.chaos import faults
from stack.chaos.backends import Backends
from stack.chaos.budgets import stack_budgets
from stack.chaos.config import (
    CLOUD_RUN_FAULTS,
    COUNTRIES,
    JOBS,
    RECOVERY_BUDGET_SEC,
    SCALED_SERVICE,
    SYNC_JOB,
    ChaosConfig,
)
from stack.chaos.probe import register_stand_in
from stack.chaos.recorder import Recorder, now
from stack.platform.handle import StackHandle

# ------------------------------------------------------------------ one scenario


async def _admin(
    rec: Recorder, session: aiohttp.ClientSession, name: str, data: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(
        rec.url(name),
        json={"data": data},
        headers={"Authorization": f"Bearer {rec.admin_token}"},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as response:
        body = await response.json(content_type=None)
    if "result" not in body:
        raise RuntimeError(f"{name} failed: {body}")
    result: dict[str, Any] = body["result"]
    return result


async def _until_ok(rec: Recorder, session: aiohttp.ClientSession, name: str, until: float) -> None:
    """Trigger ``name`` every 3 s until a run answers 200 or ``until`` passes."""
    while True:
        call = await rec.job(session, name, timeout=60)
        if call.http == 200 or now() >= until:
            return
        await asyncio.sleep(3)


async def _manual_scale(rec: Recorder, session: aiohttp.ClientSession) -> cc.Call:
    """``pack391_manualScale`` of :data:`SCALED_SERVICE` up by 0 (to the count it has:
    its instance change still goes through the Cloud Run stand-in), recorded as ``scale``."""
    data = {"serviceId": SCALED_SERVICE, "action": "scale_up", "instanceCount": 0,
            "reason": f"chaos run {rec.run_id}: a manual scale through the stand-in"}  # fmt: skip
    return await rec.call(
        session, "scale", SCALED_SERVICE, "pack391_manualScale", data, rec.admin_token
    )


async def run_fault(
    handle: StackHandle,
    fault: str,
    config: ChaosConfig,
    backends: Backends,
    run_id: str,
    budgets: dict[str, float],
) -> dict[str, Any]:
    """One scenario: load, apply ``fault``, undo, observe, check (``budgets``: each
    function's, for the answer-time invariant)."""
    country = COUNTRIES.get(fault, "NL")
    rec = Recorder(handle, config, f"{run_id}-{fault}")
    connector = aiohttp.TCPConnector(limit=config.swipe_max_in_flight + 64)
    async with aiohttp.ClientSession(connector=connector) as session:
        baseline = await asyncio.to_thread(backends.admissions, country)
        limit = len(baseline) + config.traffic_limit
        await _admin(
            rec,
            session,
            "pack391_updateMarketControl",
            {
                "country": country,
                "config": {"launchStatus": "soft_launch", "trafficLimit": limit},
                "reason": f"chaos run {run_id}: {fault}",
            },
        )
        total = config.before_sec + config.during_sec + config.after_sec
        load_until = now() + total
        load = asyncio.ensure_future(rec.load(session, country, load_until))
        await asyncio.sleep(config.before_sec)
        if fault in CLOUD_RUN_FAULTS:  # the manual scales below go through the stand-in
            await asyncio.to_thread(register_stand_in, handle)
        options = {"max_sec": config.during_sec + 30.0, **config.fault_options.get(fault, {})}
        undo = await asyncio.to_thread(faults.start_fault, handle, fault, **options)
        try:
            await asyncio.sleep(min(1.0, config.during_sec / 3))
            during_jobs: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(rec.job(session, j, 60)) for j in JOBS
            ]
            if fault in CLOUD_RUN_FAULTS:
                during_jobs.append(asyncio.ensure_future(_manual_scale(rec, session)))
            await asyncio.sleep(max(0.0, config.during_sec - min(1.0, config.during_sec / 3)))
        finally:
            fault_window = await asyncio.to_thread(undo)
        await asyncio.sleep(min(2.0, config.after_sec / 3))
        after_jobs: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(_until_ok(rec, session, j, load_until + 20)) for j in JOBS
        ]
        if fault in CLOUD_RUN_FAULTS:
            after_jobs.append(asyncio.ensure_future(_manual_scale(rec, session)))
        await load
        await rec.drain(config.request_timeout_sec + 5)
        await asyncio.gather(*during_jobs, *after_jobs, return_exceptions=True)
        sync = await rec.job(session, SYNC_JOB, 60)
        if sync.http != 200:
            await asyncio.sleep(2)
            await rec.job(session, SYNC_JOB, 60)

    window = cc.Window(
        fault,
        fault_window.started_at,
        fault_window.undone_at,
        fault_window.recovered_at,
    )
    fs_uids = await asyncio.to_thread(backends.admissions, country)
    redis_uids = await asyncio.to_thread(backends.members, country)
    history = [c for c in rec.history if c.op != "job" or c.cls in JOBS]
    verdicts = _check(
        history, rec.history, window, fault, country, limit, fs_uids, redis_uids, baseline,
        backends, config,
    )  # fmt: skip
    # every call of the scenario, syncMarkets' runs included: the budget holds at all times
    verdicts.append(cc.within_budget(rec.history, budgets))
    answers = cc.longest_answers(rec.history, window, budgets)
    longest = cc.longest_during(answers)
    _write_history(config.out_dir / f"history-{fault}.jsonl", rec.history)
    swipes = [c for c in rec.history if c.op == "swipe"]
    during = [c for c in swipes if window.phase(c) == "during"]
    return {
        "fault": fault,
        "country": country,
        "trafficLimit": limit,
        "window": {
            "startedAt": window.started_at,
            "undoneAt": window.undone_at,
            "durationSec": round(window.undone_at - window.started_at, 3),
            "recoveredAt": window.recovered_at,
            "notes": fault_window.notes,
        },
        "recoverySec": _round(cc.recovery_time(history, window)),
        "stackRecoverySec": _round(
            window.recovered_at - window.undone_at if window.recovered_at else None
        ),
        "swipe": {
            "targetRps": config.swipe_rps,
            "scheduled": rec.swipe_scheduled,
            "sent": len(swipes),
            "dropped": rec.swipe_dropped,
            "p50MsDuring": round(cc.percentile([c.latency_ms for c in during], 50), 1),
            "p99MsDuring": round(cc.percentile([c.latency_ms for c in during], 99), 1),
        },
        "rateLimitP99MsDuring": round(
            cc.percentile(
                [
                    c.latency_ms
                    for c in history
                    if c.op == "ratelimit" and window.phase(c) == "during"
                ],
                99,
            ),
            1,
        ),
        "answerTimes": answers,
        "longestDuring": (
            None
            if longest is None
            else {"function": longest[0], "ms": longest[1], "budgetSec": budgets.get(longest[0])}
        ),
        "answerSlackSec": cc.ANSWER_SLACK_SEC,
        "outcomes": cc.outcomes(history, window),
        "invariants": [v.to_json() for v in verdicts],
        "held": all(v.held for v in verdicts),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _check(
    history: list[cc.Call],
    everything: list[cc.Call],
    window: cc.Window,
    fault: str,
    country: str,
    limit: int,
    fs_uids: set[str],
    redis_uids: set[str],
    baseline: set[str],
    backends: Backends,
    config: ChaosConfig,
) -> list[cc.Verdict]:
    verdicts = [
        cc.no_internal(history, window, sandbox_errors_window=fault == "sandbox-errors"),
        cc.rate_limit_modes(history),
        cc.answered(history, window, functions_down=fault == "functions-kill"),
        cc.signup_errors_unavailable(history),
    ]
    if fault in ("redis-kill", "redis-pause"):
        verdicts.append(cc.degraded_seen(history, window))
    if fault in (*cc.REDIS_FAULTS, "functions-kill"):
        budget = RECOVERY_BUDGET_SEC.get(fault, config.recovery_budget_sec)
        verdicts.append(cc.recovered_within(history, window, budget))
        verdicts.append(cc.stayed_normal(history, window))
    if fault == "firestore-pause":
        verdicts.append(cc.latency_budget(history, window, config.latency_budget_ms))
    verdicts += cc.admissions(history, country, limit, fs_uids, redis_uids, baseline)
    verdicts += cc.jobs_failed_or_complete(
        history, window, JOBS, functions_down=fault == "functions-kill"
    )
    from shared import collections as c

    try:
        verdicts.append(
            cc.scale_guard_consistent(
                backends.docs(c.SCALING_SERVICES), backends.recent_decisions(window.started_at)
            )
        )
        verdicts.append(
            cc.deploy_monitor_consistent(
                backends.docs(c.DEPLOYMENTS), backends.keyed(c.DEPLOY_ACTIVE)
            )
        )
        verdicts.append(
            cc.live_metrics_consistent(
                backends.live_snapshot(),
                backends.history_ids(),
                [x for x in everything if x.cls == "pack391_updateLiveMetrics"],
            )
        )
    except Exception as exc:  # reading the records failed: that is a finding too
        verdicts.append(cc.Verdict("jobs' records readable after recovery", False, repr(exc), None))
    return verdicts


def _write_history(path: Path, history: list[cc.Call]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for call in sorted(history, key=lambda c: c.t_start):
            out.write(json.dumps(asdict(call), default=str) + "\n")


# ------------------------------------------------------------------ the run


async def _prepare(handle: StackHandle) -> None:
    rec = Recorder(handle, ChaosConfig(), "prepare")
    async with aiohttp.ClientSession() as session:
        # The generator is one address sending every callable: never let DDoS
        # mitigation block it (a block would turn every later answer into a denial).
        await _admin(
            rec,
            session,
            "pack391_setAllowlist",
            {"action": "add", "entry": "127.0.0.1", "reason": "chaos run: the load generator"},
        )
        await _admin(rec, session, "pack391_initScaling", {})


def run_chaos(handle: StackHandle, config: ChaosConfig) -> dict[str, Any]:
    """Every fault of ``config`` in turn; the report (also written as JSON)."""
    unknown = [f for f in config.faults if f not in faults.FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}: one of {', '.join(faults.FAULTS)}")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_prepare(handle))
    budgets = stack_budgets(handle)
    backends = Backends(handle)
    scenarios = []
    try:
        for fault in config.faults:
            scenarios.append(
                asyncio.run(run_fault(handle, fault, config, backends, run_id, budgets))
            )
    finally:
        backends.close()
    report = {
        "runId": run_id,
        "budgetsSec": budgets,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "faults": scenarios,
        "held": all(s["held"] for s in scenarios),
        "broken": [
            {"fault": s["fault"], **inv}
            for s in scenarios
            for inv in s["invariants"]
            if not inv["held"]
        ],
    }
    (config.out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report
