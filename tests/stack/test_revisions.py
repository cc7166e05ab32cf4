"""Local revisions: the sandbox routes by the local split and a revision's faults hit only
the requests it serves; its samples and business events reach the canary judge."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests

from functions.deploy_guard.readers import BusinessMetrics
from functions.deploy_guard.wiring import deploy_guard
from shared.firestore import get_db
from stack.aioserve import served_aiohttp
from stack.platform.tokens import role_token
from stack.revisions import (
    LocalRevisions,
    RevisionExists,
    RevisionFaults,
    next_revision_name,
    pick,
)
from stack.sandbox import Sandbox
from stack.sandbox.reporting import revision_reporter
from tests.conftest import Backends

# ------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("split", "draw", "expected"),
    [
        ({}, 0.0, None),
        ({"a-00001": 0}, 50.0, None),
        ({"a-00001": 100}, 0.0, "a-00001"),
        ({"a-00001": 100}, 99.99, "a-00001"),
        ({"a-00001": 95, "a-00002": 5}, 94.99, "a-00001"),
        ({"a-00001": 95, "a-00002": 5}, 95.0, "a-00002"),
        ({"a-00002": 5, "a-00001": 95}, 4.99, "a-00001"),  # name order, not insertion
        ({"a-00001": 50, "a-00002": 25}, 80.0, "a-00001"),  # short split: the largest share
    ],
)
def test_pick(split: dict[str, int], draw: float, expected: str | None) -> None:
    assert pick(split, draw) == expected


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([], "api-gateway-00001"),
        (["api-gateway-00001"], "api-gateway-00002"),
        (["api-gateway-00009", "api-gateway-v2", "chat-service-00040"], "api-gateway-00010"),
    ],
)
def test_next_revision_name(existing: list[str], expected: str) -> None:
    assert next_revision_name("api-gateway", existing) == expected


def test_faults_round_trip_and_bounds() -> None:
    faults = RevisionFaults(error_pct=12.5, latency_ms=300, fail_payouts=True)
    assert RevisionFaults.from_json(faults.to_json()) == faults
    assert RevisionFaults.from_json(None) == RevisionFaults()
    with pytest.raises(ValueError, match="errorPct"):
        RevisionFaults(error_pct=101)


# ------------------------------------------------------------ platform side


def test_deploy_lands_like_firebase_deploy_or_at_zero_with_no_traffic(backends: Backends) -> None:
    revisions = LocalRevisions(redis.Redis.from_url(backends.redis_url, decode_responses=True))
    assert revisions.ensure_serving("chat-service") == "chat-service-00001"
    assert revisions.ensure_serving("chat-service") is None  # idempotent
    rev = revisions.deploy(
        "chat-service", faults=RevisionFaults(token_mismatch=True), all_traffic=False
    )
    assert rev == "chat-service-00002"
    seen = revisions.traffic.observe("chat-service", "")
    assert seen.latest_ready == rev and seen.shares == {"chat-service-00001": 100}
    # a function's deploy (firebase deploy): all traffic on the new revision, pin or not
    third = revisions.deploy("chat-service")
    assert revisions.traffic.observe("chat-service", "").shares == {third: 100}
    assert revisions.revisions("chat-service")[rev].token_mismatch
    with pytest.raises(RevisionExists):
        revisions.deploy("chat-service", name=rev)
    with pytest.raises(ValueError, match="revision name"):
        revisions.deploy("chat-service", name="Bad_Name")


# ------------------------------------------------------------- sandbox side


@pytest.fixture
def sandbox(backends: Backends, live_server: str) -> Iterator[tuple[Sandbox, str]]:
    functions_url = f"{live_server}/{backends.project}/us-central1"
    reporter = revision_reporter(functions_url, role_token(backends.project, "ops"))
    box = Sandbox(get_db(), backends.redis_url, revision_reporter=reporter, interval_sec=3600)
    box.revisions._refresh_sec = 0.0  # see every split change at once
    with served_aiohttp(box.app()) as url:
        yield box, url


def _post_many(url: str, path: str, count: int, body: dict[str, object]) -> list[int]:
    def post(i: int) -> int:
        payload = body | {"uid": f"u{i % 7}", "callId": f"c{i}"}
        return requests.post(f"{url}{path}", json=payload, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, range(count)))


def test_a_faulty_revision_fails_only_its_share(
    backends: Backends, sandbox: tuple[Sandbox, str]
) -> None:
    box, url = sandbox
    revisions = LocalRevisions(redis.Redis.from_url(backends.redis_url, decode_responses=True))
    stable = revisions.ensure_serving("media-processing")
    assert stable is not None
    canary = revisions.deploy(
        "media-processing", faults=RevisionFaults(error_pct=100), all_traffic=False
    )
    # no share yet: the bad revision serves nothing
    codes = _post_many(url, "/call/start", 40, {"loadRunId": "rev-test"})
    assert codes.count(200) == 40
    revisions.traffic.apply("media-processing", "", {stable: 70, canary: 30})
    codes = _post_many(url, "/call/start", 400, {"loadRunId": "rev-test"})
    failed = codes.count(500)
    assert codes.count(200) + failed == 400
    assert 80 <= failed <= 160, failed  # 30 % of 400 = 120, +-4 standard deviations
    samples = {s["revision"]: s for s in box.revisions.samples()}
    assert samples[canary]["errors"] == samples[canary]["requests"] == failed
    assert samples[stable]["errors"] == 0
    assert samples[stable]["requests"] == 40 + 400 - failed
    # other services are untouched by media-processing's revisions
    other = _post_many(url, "/event/purchase", 20, {"loadRunId": "rev-test", "eventId": "e"})
    assert other.count(200) == 20


def test_payout_and_token_faults_reach_the_judge(
    backends: Backends, sandbox: tuple[Sandbox, str]
) -> None:
    box, url = sandbox
    revisions = LocalRevisions(redis.Redis.from_url(backends.redis_url, decode_responses=True))
    pay_stable = revisions.ensure_serving("payment-processor")
    chat_stable = revisions.ensure_serving("chat-service")
    assert pay_stable is not None and chat_stable is not None
    pay_bad = revisions.deploy("payment-processor", faults=RevisionFaults(fail_payouts=True))
    chat_bad = revisions.deploy("chat-service", faults=RevisionFaults(token_mismatch=True))
    revisions.traffic.apply("payment-processor", "", {pay_stable: 50, pay_bad: 50})
    revisions.traffic.apply("chat-service", "", {chat_stable: 50, chat_bad: 50})
    start = datetime.now(UTC) - timedelta(seconds=1)
    payouts = _post_many(url, "/payout/request", 60, {"loadRunId": "rev-biz", "amountTokens": 5})
    chats = _post_many(url, "/chat/message", 60, {"loadRunId": "rev-biz", "tokens": 2})
    assert set(payouts) <= {202, 500} and set(chats) == {200}
    # push and write now (on the test's own loop: neither touches the sandbox's Redis)
    asyncio.run(box.revisions.report_once())
    end = datetime.now(UTC) + timedelta(seconds=1)
    business = BusinessMetrics(get_db())
    bad = business.window(pay_bad, start, end)
    good = business.window(pay_stable, start, end)
    assert bad.payouts == bad.payout_anomalies == payouts.count(500) > 0
    assert good.payouts == payouts.count(202) > 0 and good.payout_anomalies == 0
    bad_chat = business.window(chat_bad, start, end)
    good_chat = business.window(chat_stable, start, end)
    assert bad_chat.token_writes == bad_chat.token_mismatches > 0
    assert good_chat.token_writes > 0 and good_chat.token_mismatches == 0
    assert bad_chat.token_writes + good_chat.token_writes == 60
    # the wrong debit is real: 3 tokens instead of 2 for the bad revision's messages
    wallets = redis.Redis.from_url(backends.redis_url, decode_responses=True)
    spent = sum(
        10_000 - int(wallets.get(f"pack391:sandbox:rev-biz:wallet:u{i}") or 10_000)
        for i in range(7)
    )
    assert spent == 2 * 60 + bad_chat.token_mismatches
    # the per-revision samples went to pack391_reportRevisionMetrics: the judge reads them
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    window = deploy_guard().p.metrics.window("payment-processor", "us-central1", pay_bad, minute)
    if window.requests == 0:  # the push straddled a minute boundary
        window = deploy_guard().p.metrics.window(
            "payment-processor", "us-central1", pay_bad, minute - timedelta(minutes=1)
        )
    assert window.requests == window.errors == payouts.count(500)


def test_a_revisions_p95_is_over_the_trailing_minute_not_one_push_interval() -> None:
    from stack.sandbox.routing import LATENCY_WINDOW_SEC, _Latencies

    window = _Latencies()
    # a 5 % canary: about 10 requests per 10-second push, one slow outlier per minute
    for i in range(60):
        window.add(float(i), 900.0 if i == 30 else 40.0)
    # the old per-interval p95 of the push holding the outlier was its maximum, 900 ms
    assert window.p95(60.0) == 40.0
    assert window.p95(30.0 + LATENCY_WINDOW_SEC + 1) == 40.0  # the outlier aged out
    assert window.p95(200.0) is None  # nothing left in the window
