"""Load-test orchestration: start a run, execute one shard, read results, abort, clean up."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.load.engine import Progress, ShardRunner, progress_doc
from functions.load.policy import Admission, target_problem
from functions.load.ports import Dispatcher, MinuteSource
from functions.load.recorded import RecordedPlan, Window, check_window, parse_instant, recorded_plan
from functions.load.results import Seconds, crash_map, heatmap, merge, summarize, timeline
from functions.load.scenarios import Plan, Thresholds, build_plan, new_run_id
from functions.load.store import (
    AbortFlags,
    FailoverLog,
    LoadAdmissions,
    LoadRunRepository,
    SyntheticData,
    retention_cutoff,
)
from shared import thresholds as t
from shared.audit import Change
from shared.errors import FailedPrecondition, InvalidInput, NotFound
from shared.models.load import (
    AbortLoadTestResult,
    CleanupLoadTestsRequest,
    CleanupLoadTestsResult,
    ExecuteShardRequest,
    ExecuteShardResult,
    LoadRunDoc,
    LoadTestResults,
    RunLoadTestRequest,
    RunLoadTestResult,
)

log = logging.getLogger("pack391.load")

START_DELAY_SEC = 2.0
"""Shards start together this long after the run is recorded (time to spawn them)."""

FINAL_STATUSES = ("completed", "aborted")


@dataclass(frozen=True)
class LoadPorts:
    runs: LoadRunRepository
    admissions: LoadAdmissions
    aborts: AbortFlags
    dispatcher: Dispatcher
    failover: FailoverLog
    synthetic: SyntheticData
    allowlist: list[str]
    local_mode: bool
    default_target: str
    minutes: MinuteSource


def plan_for(req: RunLoadTestRequest, default_target: str) -> Plan:
    """A spec scenario's plan with the request's overrides."""
    if req.scenario_id is None:
        raise InvalidInput("scenarioId", "give scenarioId or fromMetrics")
    o = req.overrides
    if o is None:
        return build_plan(req.scenario_id, default_target)
    return build_plan(
        req.scenario_id,
        o.target or default_target,
        rps=float(o.rps) if o.rps is not None else None,
        duration_sec=o.duration_sec,
        shards=o.shards,
        thresholds=o.thresholds.changes() if o.thresholds else None,
        timeout_sec=float(o.timeout_sec) if o.timeout_sec is not None else None,
        max_in_flight=o.max_in_flight,
        abort_on_fail=o.abort_on_fail,
    )


def recorded_plan_for(
    req: RunLoadTestRequest, default_target: str, minutes: MinuteSource, now: datetime
) -> RecordedPlan:
    """A ``fromMetrics`` request's plan: the window's recorded minutes, read through the
    port, handed to the pure builder (:mod:`functions.load.recorded`)."""
    fm = req.from_metrics
    assert fm is not None
    if req.scenario_id is not None:
        raise InvalidInput("fromMetrics", "give scenarioId or fromMetrics, not both")
    o = req.overrides
    for name, value in (("rps", o and o.rps), ("durationSec", o and o.duration_sec)):
        if value is not None:
            raise InvalidInput(
                f"overrides.{name}",
                "not with fromMetrics: the window sets the rates and the duration "
                "(fromMetrics.scale multiplies the rates, fromMetrics.minuteSec compresses time)",
            )
    window = Window(
        parse_instant(fm.start, "fromMetrics.start"), parse_instant(fm.end, "fromMetrics.end")
    )
    check_window(window, now)
    th = Thresholds()
    if o is not None and o.thresholds is not None:
        th = dataclasses.replace(th, **o.thresholds.changes())
    return recorded_plan(
        minutes.minutes(window.start, window.end),
        window,
        (o.target if o else None) or default_target,
        scale=float(fm.scale),
        minute_sec=fm.minute_sec,
        mapping=fm.map,
        shards=o.shards if o else None,
        thresholds=th,
        timeout_sec=float(o.timeout_sec) if o and o.timeout_sec is not None else None,
        max_in_flight=o.max_in_flight if o else None,
        abort_on_fail=bool(o and o.abort_on_fail),
    )


class LoadService:
    def __init__(self, ports: LoadPorts) -> None:
        self._p = ports

    # ------------------------------------------------------------------ start

    def start(self, req: RunLoadTestRequest, change: Change) -> RunLoadTestResult:
        now = change.now
        report: dict[str, Any] | None = None
        if req.from_metrics is not None:
            built = recorded_plan_for(req, self._p.default_target, self._p.minutes, now)
            plan, report = built.plan, built.report
        else:
            plan = plan_for(req, self._p.default_target)
        problem = target_problem(plan.target, self._p.allowlist, self._p.local_mode)
        if problem is not None:
            raise InvalidInput("overrides.target", problem)
        plan_json = plan.to_json() | ({"fromMetrics": report} if report is not None else {})
        run_id = new_run_id(now)
        start_at = now + timedelta(seconds=START_DELAY_SEC)
        doc = LoadRunDoc(
            run_id=run_id,
            scenario_id=plan.scenario_id,
            plan=plan_json,
            status="queued",
            peak_rps=plan.rps,
            shards=plan.shards,
            requested_by=change.actor_uid,
            created_at=now,
            start_at=start_at,
            expire_at=now + timedelta(days=t.LOAD_TEST_RETENTION_DAYS),
        )
        deadline = start_at + timedelta(seconds=plan.duration_sec + t.LOAD_TEST_REAP_GRACE_SEC)

        record = self._p.runs.recorder(
            doc, change, {"scenarioId": plan.scenario_id, "plan": plan_json}
        )

        # the cap is checked and the run recorded in one transaction: concurrent starts
        # cannot exceed it together, and runs past their deadline are reaped first
        verdict = self._p.admissions.admit(
            Admission(run_id, plan.rps, deadline), now, t.LOAD_TEST_GLOBAL_RPS_CAP, record
        )
        for reaped in verdict.reaped:
            self._reap(reaped)
        if not verdict.admitted:
            raise FailedPrecondition(verdict.problem or "over the global load-test cap")
        self._p.dispatcher.dispatch(run_id, plan.shards, start_at.timestamp())
        return RunLoadTestResult(
            run_id=run_id, shards=plan.shards, start_at=start_at, from_metrics=report
        )

    # ------------------------------------------------------------------ shard

    def execute(self, req: ExecuteShardRequest) -> ExecuteShardResult:
        runs = self._p.runs
        doc = runs.get(req.run_id)
        if doc is None:
            raise NotFound(f"no load test {req.run_id}")
        plan = Plan.from_json(doc.plan)
        if req.shard >= plan.shards:
            raise InvalidInput("shard", f"run {req.run_id} has {plan.shards} shards")
        if doc.status in FINAL_STATUSES:
            raise FailedPrecondition(f"run {req.run_id} is already {doc.status}")
        if doc.status == "queued":
            runs.set_status(req.run_id, status="running", startedAt=datetime.now(UTC))
        runs.shard_update(req.run_id, req.shard, {"status": "running", "shard": req.shard})

        def sink(seconds: Seconds, progress: Progress) -> None:
            runs.write_slice(req.run_id, req.shard, seconds, datetime.now(UTC))
            runs.shard_update(req.run_id, req.shard, {"progress": progress_doc(progress)})

        runner = ShardRunner(
            req.run_id,
            plan,
            req.shard,
            abort_check=lambda: self._p.aborts.get(req.run_id),
            on_breach=lambda why: self._p.aborts.set(req.run_id, why),
            sink=sink,
        )
        outcome, _ = runner.run(float(req.start_at))
        runs.shard_update(
            req.run_id,
            req.shard,
            {
                "status": outcome.status,
                "progress": progress_doc(outcome.progress),
                "elapsedSec": outcome.elapsed_sec,
                "abortReason": outcome.abort_reason,
                "abortLatencySec": outcome.abort_latency_sec,
                "endedAt": datetime.now(UTC),
            },
        )
        if runs.all_shards_final(req.run_id, plan.shards):
            self._finalize(req.run_id)
        return ExecuteShardResult(
            run_id=req.run_id,
            shard=req.shard,
            status=outcome.status,
            sent=outcome.progress.sent,
            dropped=outcome.progress.dropped,
        )

    def _reap(self, run_id: str) -> None:
        """A run past its deadline with no final status: its shards stopped reporting."""
        doc = self._p.runs.get(run_id)
        if doc is not None and doc.status not in FINAL_STATUSES:
            log.warning("load test %s reaped: no shard ended by its deadline", run_id)
            self._p.runs.set_status(
                run_id,
                status="aborted",
                endedAt=datetime.now(UTC),
                abortReason="reaped: its shards stopped reporting before the deadline",
            )

    def _finalize(self, run_id: str) -> None:
        self._p.admissions.release(run_id)
        doc = self._p.runs.get(run_id)
        if doc is None:
            return
        report = self._compute(doc)
        self._p.runs.write_report(run_id, {k: v for k, v in report.items() if k != "summary"})
        aborted = any(s.get("status") == "aborted" for s in self._p.runs.shards(run_id))
        self._p.runs.set_status(
            run_id,
            status="aborted" if aborted else "completed",
            endedAt=datetime.now(UTC),
            summary=report["summary"],
            abortReason=self._p.aborts.get(run_id) if aborted else None,
        )

    def _compute(self, doc: LoadRunDoc) -> dict[str, Any]:
        plan = Plan.from_json(doc.plan)
        seconds = merge(self._p.runs.slices(doc.run_id))
        shards = self._p.runs.shards(doc.run_id)
        elapsed = max(
            [float(s.get("elapsedSec") or s.get("progress", {}).get("elapsedSec", 0.0))
             for s in shards] or [0.0]
        )  # fmt: skip
        end = doc.ended_at or datetime.now(UTC)
        return {
            "summary": summarize(seconds, plan.thresholds, elapsed, plan.rps),
            "timeline": timeline(seconds),
            "heatmap": heatmap(seconds),
            "crashMap": crash_map(seconds),
            "failoverLog": self._p.failover.events(doc.start_at, end),
        }

    # ------------------------------------------------------------------ read

    def results(self, run_id: str) -> LoadTestResults:
        doc = self._p.runs.get(run_id)
        if doc is None:
            raise NotFound(f"no load test {run_id}")
        shards = self._p.runs.shards(run_id)
        progress = {
            "shards": doc.shards,
            "shardsDone": doc.shards_done,
            "elapsedSec": max([s.get("progress", {}).get("elapsedSec", 0.0) for s in shards]
                              or [0.0]),
            "durationSec": doc.plan["durationSec"],
            "sent": sum(s.get("progress", {}).get("sent", 0) for s in shards),
            "dropped": sum(s.get("progress", {}).get("dropped", 0) for s in shards),
        }  # fmt: skip
        stored = self._p.runs.report(run_id) if doc.status in FINAL_STATUSES else None
        if stored is not None and doc.summary is not None:
            report = dict(stored, summary=doc.summary)
        else:
            report = self._compute(doc)
        return LoadTestResults(
            run_id=run_id,
            status=doc.status,
            progress=progress,
            summary=report["summary"],
            timeline=report["timeline"],
            heatmap=report["heatmap"],
            crash_map=report["crashMap"],
            failover_log=report["failoverLog"],
        )

    # ------------------------------------------------------------------ abort

    def abort(self, run_id: str, change: Change) -> AbortLoadTestResult:
        doc = self._p.runs.get(run_id)
        if doc is None:
            raise NotFound(f"no load test {run_id}")
        if doc.status in FINAL_STATUSES:
            return AbortLoadTestResult(run_id=run_id, status=doc.status)
        self._p.aborts.set(run_id, f"aborted by {change.actor_uid}: {change.reason}")
        self._p.runs.mark_aborting(run_id, doc.status, change)
        return AbortLoadTestResult(run_id=run_id, status="aborting")

    # ------------------------------------------------------------------ cleanup

    def cleanup(self, req: CleanupLoadTestsRequest, change: Change) -> CleanupLoadTestsResult:
        if req.run_id is None and req.older_than_days is None:
            raise InvalidInput("runId", "give runId or olderThanDays")
        if req.run_id is not None:
            if self._p.runs.get(req.run_id) is None:
                raise NotFound(f"no load test {req.run_id}")
            run_ids = [req.run_id]
        else:
            days = req.older_than_days if req.older_than_days is not None else 0
            run_ids = self._p.runs.older_than(retention_cutoff(change.now, days))
        run_docs = synthetic_docs = synthetic_keys = 0
        for run_id in run_ids:
            doc = self._p.runs.get(run_id)
            if doc is not None and doc.status not in FINAL_STATUSES:
                self._p.aborts.set(run_id, "cleaned up while running")
            self._p.admissions.release(run_id)
            docs, keys = self._p.synthetic.delete(run_id)
            synthetic_docs += docs
            synthetic_keys += keys
            run_docs += self._p.runs.delete_run(run_id)
        result = CleanupLoadTestsResult(
            runs=len(run_ids),
            run_documents=run_docs,
            synthetic_documents=synthetic_docs,
            synthetic_redis_keys=synthetic_keys,
        )
        self._p.runs.audit(
            change, "loadtest/cleanup", {"runIds": run_ids}, result.model_dump(by_alias=True)
        )
        return result


def wait_for(service: LoadService, run_id: str, timeout_sec: float) -> LoadTestResults:
    """Poll until the run is final (tests and the CLI's remote mode)."""
    deadline = time.monotonic() + timeout_sec
    while True:
        results = service.results(run_id)
        if results.status in FINAL_STATUSES or time.monotonic() > deadline:
            return results
        time.sleep(0.25)
