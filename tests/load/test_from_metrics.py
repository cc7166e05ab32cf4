"""Load shaped like production, end to end: recorded minutes seeded in the Firestore
emulator (``pack391_sli_minutes``, the minute roll-up's shape), replayed time-compressed
(one second a minute) through ``pack391_runLoadTest`` (shards in worker processes, as
the local stack's dispatcher runs them) against the sandbox, and through ``pack391
loadtest --from-metrics``. The achieved requests per endpoint and minute must reproduce
the recorded rates, scaled, within 1 %. Counts, not latencies: the parallel phase is
quiet enough (a start is dropped only when its shard is a whole second behind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore import FieldFilter

from functions.load.local import wait_local_workers
from functions.load.results import merge
from functions.load.service import wait_for
from functions.load.store import LoadRunRepository
from functions.load.wiring import load_service
from shared import collections
from shared.firestore import get_db
from shared.models.slo import SliMinuteDoc
from tests.conftest import ROOT, Backends, Caller

SCALE = 2.0
RECORDED = [  # per minute: requests answered per recorded name
    {"swipe": 3000, "chat_message": 600, "wallet_balance": 300},
    {"swipe": 1500, "chat_message": 2400, "feed_v2": 900, "pack391_checkRateLimit": 50},
    {"swipe": 4500, "wallet_balance": 600, "pack391_checkRateLimit": 70},
]
MAPPING = {"feed_v2": "discovery_feed"}


def expected(minute: int) -> Counter[str]:
    """Minute ``minute``'s requests per load endpoint at one second a minute: the
    recorded rate (n / 60 per second) times the scale, for 1 s."""
    out: Counter[str] = Counter()
    for name, n in RECORDED[minute].items():
        endpoint = MAPPING.get(name, name)
        if not endpoint.startswith("pack391_"):
            out[endpoint] += round(n * SCALE / 60)
    return out


def seed() -> tuple[str, str]:
    """The recorded minutes, an hour ago; the window as (start, end)."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    db = get_db()
    for m, names in enumerate(RECORDED):
        at = start + timedelta(minutes=m)
        doc = SliMinuteDoc.model_validate(
            {
                "at": at,
                "callables": {k: {"n": n, "bad": 0, "slow": 0} for k, n in names.items()},
                "expireAt": at + timedelta(days=35),
            }
        )
        db.collection(collections.SLI_MINUTES).document(f"{at:%Y%m%dT%H%MZ}").set(
            doc.model_dump(by_alias=True)
        )
    # a minute outside the window must not count
    late = start + timedelta(minutes=len(RECORDED))
    db.collection(collections.SLI_MINUTES).document(f"{late:%Y%m%dT%H%MZ}").set(
        {"at": late, "callables": {"swipe": {"n": 60000, "bad": 0, "slow": 0}}}
    )
    end = start + timedelta(minutes=len(RECORDED))
    return f"{start:%Y-%m-%dT%H:%MZ}", f"{end:%Y-%m-%dT%H:%MZ}"


def answered(seconds: dict[int, Any]) -> dict[int, Counter[str]]:
    """Requests answered per second (= minute) and endpoint: recorded latencies (errors
    included) plus those the target shed."""
    out: dict[int, Counter[str]] = {}
    for sec, stats in seconds.items():
        counts: Counter[str] = Counter(
            {ep: hist.get_total_count() for ep, hist in stats.hist.items()}
        )
        counts.update(stats.shed)
        out[sec] = counts
    return out


def assert_reproduces_the_recorded_rates(per_minute: dict[int, Counter[str]]) -> None:
    assert sorted(per_minute) == list(range(len(RECORDED)))
    totals: Counter[str] = Counter()
    for m in range(len(RECORDED)):
        want = expected(m)
        for endpoint, n in want.items():
            assert abs(per_minute[m][endpoint] - n) <= 0.01 * n, (m, endpoint, per_minute[m])
        assert set(per_minute[m]) == set(want), (m, per_minute[m])
        totals.update(per_minute[m])
    want_totals: Counter[str] = sum((expected(m) for m in range(len(RECORDED))), Counter())
    for endpoint, n in want_totals.items():
        assert abs(totals[endpoint] - n) <= 0.01 * n, (endpoint, totals)


def test_the_callable_replays_a_recorded_window(caller: Caller, sandbox_url: str) -> None:
    start, end = seed()
    res = caller.call(
        "pack391_runLoadTest",
        {
            "fromMetrics": {
                "start": start, "end": end, "scale": SCALE, "minuteSec": 1, "map": MAPPING,
            },
            "overrides": {"target": sandbox_url, "shards": 2},
        },
    )  # fmt: skip
    assert res.status == 200, res.body
    out = res.result
    report = out["fromMetrics"]
    assert report["unmapped"] == {"pack391_checkRateLimit": 120}
    assert report["mapped"] == MAPPING
    assert (report["recordedMinutes"], report["missingMinutes"]) == (3, 0)
    assert report["plannedRequests"] == 130 + 160 + 170
    assert out["shards"] == 2
    run_id = out["runId"]
    wait_local_workers(60)
    final = wait_for(load_service(), run_id, 30)
    assert final.status == "completed", final
    summary = final.summary
    assert summary["dropped"] == 0 and summary["scheduled"] == 460
    assert summary["targetRps"] == 170.0  # the busiest minute
    seconds = merge(LoadRunRepository(get_db()).slices(run_id))
    assert_reproduces_the_recorded_rates(answered(seconds))
    # the run document carries the profile (what a Cloud Tasks shard reads) and the report
    doc = get_db().collection(collections.LOAD_RUNS).document(run_id).get().to_dict() or {}
    assert doc["scenarioId"] == "from_metrics"
    assert doc["plan"]["profile"]["counts"]["swipe"] == [100, 50, 150]
    assert doc["plan"]["fromMetrics"]["unmapped"] == {"pack391_checkRateLimit": 120}
    audit = (
        get_db()
        .collection(collections.AUDIT_LOG)
        .where(filter=FieldFilter("action", "==", "loadtest.run"))
    )
    entries = [a.to_dict() or {} for a in audit.stream()]
    assert len(entries) == 1 and entries[0]["after"]["scenarioId"] == "from_metrics"


@pytest.mark.parametrize(
    ("from_metrics", "overrides", "field"),
    [
        ({"start": "2026-12-05T18:00Z", "end": "2026-12-05T18:03Z"}, {}, "fromMetrics"),
        ({"start": "2026-12-05T18:00Z", "end": "2099-01-01T00:00Z"}, {}, "fromMetrics.end"),
        ({"start": "2026-12-05T18:00", "end": "2026-12-05T18:03Z"}, {}, "fromMetrics.start"),
        ({"start": "2026-12-05T18:00Z", "end": "2026-12-05T18:03Z", "scale": 0}, {},
         "fromMetrics.scale"),
        ({"start": "2026-12-05T18:00Z", "end": "2026-12-05T18:03Z", "minuteSec": 61}, {},
         "fromMetrics.minuteSec"),
        ({"start": "2026-12-05T18:00Z", "end": "2026-12-05T18:03Z"}, {"rps": 10},
         "overrides.rps"),
        ({"start": "2026-12-05T18:00Z"}, {}, "fromMetrics.end"),
    ],
)  # fmt: skip
def test_bad_from_metrics_requests_name_the_field(
    caller: Caller, from_metrics: dict[str, Any], overrides: dict[str, Any], field: str
) -> None:
    res = caller.call("pack391_runLoadTest", {"fromMetrics": from_metrics, "overrides": overrides})
    assert (res.status, res.error["status"]) == (400, "INVALID_ARGUMENT"), res.body
    assert res.error["message"].startswith(field), res.error["message"]
    assert get_db().collection(collections.LOAD_RUNS).get() == []  # nothing recorded


def test_scenario_and_from_metrics_together_or_neither_are_refused(caller: Caller) -> None:
    window = {"start": "2026-12-05T18:00Z", "end": "2026-12-05T18:03Z"}
    both = caller.call("pack391_runLoadTest", {"scenarioId": "swipe_load", "fromMetrics": window})
    assert both.error["status"] == "INVALID_ARGUMENT" and "not both" in both.error["message"]
    neither = caller.call("pack391_runLoadTest", {})
    assert neither.error["message"].startswith("scenarioId"), neither.body
    denied = caller.call("pack391_runLoadTest", {"fromMetrics": window}, role="ops")
    assert (denied.status, denied.error["status"]) == (403, "PERMISSION_DENIED")


def cli(backends: Backends | None, *args: str, **env_over: str) -> subprocess.CompletedProcess[str]:
    """``pack391 loadtest ARGS`` on the test's emulator (``backends`` None: no
    FIRESTORE_EMULATOR_HOST in its environment)."""
    env = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
    if backends is not None:
        env["FIRESTORE_EMULATOR_HOST"] = backends.firestore_host
    env.update(env_over)
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "loadtest", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def test_the_cli_replays_a_recorded_window(
    backends: Backends, fast_url: str, tmp_path: Path
) -> None:
    start, end = seed()
    done = cli(
        backends, "--from-metrics", f"{start}/{end}", "--scale", str(SCALE), "--minute-sec", "1",
        "--map", "feed_v2=discovery_feed", "--target", fast_url, "--workers", "2",
        "--json", str(tmp_path / "run.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not replayed (" in done.stderr and "pack391_checkRateLimit (120)" in done.stderr
    assert "3 of 3 minutes recorded" in done.stderr
    brief = json.loads(done.stdout)
    assert brief["scenarioId"] == "from_metrics" and brief["dropped"] == 0
    assert brief["fromMetrics"]["plannedRequests"] == brief["requests"] == 460
    # the whole window's requests per endpoint, within 1 % of the recorded ones, scaled
    summary = json.loads((tmp_path / "run.json").read_text())["summary"]
    got = Counter({ep: row["count"] for ep, row in summary["endpoints"].items()})
    got.update(summary["shedByEndpoint"])
    want: Counter[str] = sum((expected(m) for m in range(len(RECORDED))), Counter())
    assert set(got) == set(want)
    for endpoint, n in want.items():
        assert abs(got[endpoint] - n) <= 0.01 * n, (endpoint, got)


def test_the_cli_refuses_a_window_without_traffic(backends: Backends) -> None:
    done = cli(backends, "--from-metrics", "2026-12-05T18:00Z/PT3M", "--quiet")
    assert done.returncode == 2
    assert "--from-metrics: no recorded traffic in 2026-12-05T18:00Z/2026-12-05T18:03Z" in (
        done.stderr
    )
    both = cli(backends, "swipe_load", "--from-metrics", "last:5m")
    assert both.returncode == 2 and "give a SCENARIO or --from-metrics" in both.stderr


def test_the_cli_says_which_firestore_it_needs(backends: Backends, tmp_path: Path) -> None:
    """A shell beside ``make run`` has no FIRESTORE_EMULATOR_HOST: without Google
    credentials either, the command says what to give; ``--firestore`` gives the emulator."""
    nowhere = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"),
        "CLOUDSDK_CONFIG": str(tmp_path),  # no gcloud application-default login here
        "NO_GCE_CHECK": "True",  # not on Google Cloud: no metadata server to ask
    }
    lost = cli(None, "--from-metrics", "2026-12-05T18:00Z/PT3M", "--quiet", **nowhere)
    assert lost.returncode == 2
    assert "no Firestore to read: give --firestore HOST:PORT" in lost.stderr, lost.stderr
    given = cli(
        None, "--from-metrics", "2026-12-05T18:00Z/PT3M", "--quiet",
        "--firestore", backends.firestore_host, **nowhere,
    )  # fmt: skip
    assert given.returncode == 2
    assert "--from-metrics: no recorded traffic in 2026-12-05T18:00Z" in given.stderr
