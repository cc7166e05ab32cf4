"""Benchmark: one ``pack391_updateLiveMetrics`` against the emulator at 1,000 and 100,000
source documents, aggregation queries vs a naive stream-and-count, in one run.

    ./venv/bin/python -m bench.ops_metrics [--sizes 1000 100000] [--runs 5]

Starts its own Firestore emulator. For each size the five source collections are
seeded (batches of 500) with :func:`stack.ops_seed.scaled`; then, each measured
``--runs`` times (median wall time):

- ``update``: the whole update (``OpsService.update``: 15 aggregation queries run 8 in
  parallel, the snapshot and history batch, one transaction per alert rule);
- ``aggregates``: only the source numbers (``AggregateMetricsSource.counts``);
- ``naive``: the same numbers by streaming the documents and counting in Python.

Firestore RPCs are counted with a gRPC client interceptor on the client's channel (every
unary and streaming call), and so are the streamed response messages (one per document
a query returns: what Firestore bills as reads). The naive numbers are checked equal to
the aggregation numbers. Prints JSON with the ratios 100k/1k.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from functions.ops.metrics_source import AggregateMetricsSource
from functions.ops.panels import UnavailablePanel
from functions.ops.policy import alert_rules, start_of_day
from functions.ops.ports import Panels
from functions.ops.service import OpsService
from functions.ops.store import OpsRepository
from shared import collections, thresholds
from shared.alerts.notifier import WebhookNotifier, deliver
from shared.alerts.store import AlertStore
from shared.models.ops import (
    FraudAlerts,
    PanicActivations,
    PayoutQueue,
    SourceMetrics,
    SupportQueue,
    TokenVelocity,
)
from stack.ops_seed import scaled, seed
from stack.platform import datastores
from stack.sdk_private import InterceptedClient

PROJECT = "demo-pack391-bench"


class RpcCounter(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Counts calls per method and the messages streamed back."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.streamed = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.streamed = 0

    def _count(self, details: Any) -> None:
        with self._lock:
            self.calls[str(details.method).rsplit("/", 1)[-1]] += 1

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self._count(details)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self._count(details)
        return _CountedStream(continuation(details, request), self)


class _CountedStream:
    """Wraps a streaming call: counts each message, passes everything else through."""

    def __init__(self, call: Any, counter: RpcCounter) -> None:
        self._call, self._counter = call, counter

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        message = next(self._call)
        with self._counter._lock:
            self._counter.streamed += 1
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class CountingClient(InterceptedClient):
    """A Firestore client whose emulator channel goes through :class:`RpcCounter`."""

    counter: RpcCounter

    def wrap_channel(self, channel: Any) -> Any:
        return grpc.intercept_channel(channel, self.counter)


def counting_client() -> CountingClient:
    client = CountingClient(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    client.counter = RpcCounter()
    return client


def naive_counts(db: firestore.Client, now: datetime) -> SourceMetrics:
    """The same numbers by streaming every document and counting in Python."""

    def stream(name: str, *fields: str) -> Iterator[dict[str, Any]]:
        for snap in db.collection(name).select(list(fields)).stream():
            yield snap.to_dict() or {}

    active_since = now - timedelta(minutes=thresholds.ACTIVE_USER_WINDOW_MIN)
    paying_since = now - timedelta(days=thresholds.PAYING_USER_WINDOW_DAYS)
    active = paying = 0
    for u in stream(collections.APP_USERS, "lastActiveAt", "lastPurchaseAt"):
        active += int(u.get("lastActiveAt") is not None and u["lastActiveAt"] >= active_since)
        paying += int(u.get("lastPurchaseAt") is not None and u["lastPurchaseAt"] >= paying_since)
    tx_since = now - timedelta(minutes=thresholds.TOKEN_VELOCITY_WINDOW_MIN)
    earned = spent = 0.0
    tx = 0
    for t in stream(collections.APP_WALLET_TRANSACTIONS, "type", "amount", "createdAt"):
        if t["createdAt"] >= tx_since:
            tx += 1
            earned += t["amount"] if t["type"] == "earn" else 0.0
            spent += t["amount"] if t["type"] == "spend" else 0.0
    day = start_of_day(now)
    fa = Counter[str]()
    for f in stream(collections.APP_FRAUD_ALERTS, "status", "severity", "resolvedAt"):
        fa["active"] += f["status"] == "active"
        fa["critical"] += f["status"] == "active" and f["severity"] == "critical"
        fa["resolved"] += (
            f["status"] == "resolved"
            and f.get("resolvedAt") is not None
            and (f["resolvedAt"] >= day)
        )
    pq = Counter[str]()
    total = 0.0
    for p in stream(collections.APP_PAYOUTS, "status", "amount"):
        pq[p["status"]] += 1
        total += p["amount"] if p["status"] in ("pending", "processing") else 0.0
    sq = Counter[str]()
    resp: list[float] = []
    resp_since = now - timedelta(hours=thresholds.SUPPORT_RESPONSE_WINDOW_HOURS)
    fields = ("status", "priority", "firstResponseAt", "responseTimeSec")
    for t in stream(collections.APP_SUPPORT_TICKETS, *fields):
        sq["open"] += t["status"] == "open"
        sq["urgent"] += t["status"] == "open" and t["priority"] == "urgent"
        if t.get("firstResponseAt") is not None and t["firstResponseAt"] >= resp_since:
            resp.append(t["responseTimeSec"])
    passes = list(stream(collections.PANIC_PASSES, "grantedAt", "expiresAt"))
    return SourceMetrics(
        active_users=active,
        paying_users=paying,
        token_velocity=TokenVelocity(
            earned=earned,
            spent=spent,
            net=earned - spent,
            transactions_per_minute=tx / thresholds.TOKEN_VELOCITY_WINDOW_MIN,
        ),
        fraud_alerts=FraudAlerts(
            active=fa["active"], critical=fa["critical"], resolved_today=fa["resolved"]
        ),
        payout_queue=PayoutQueue(
            pending=pq["pending"],
            processing=pq["processing"],
            failed=pq["failed"],
            total_amount=total,
        ),
        support_queue=SupportQueue(
            open=sq["open"],
            urgent=sq["urgent"],
            avg_response_time=sum(resp) / len(resp) if resp else None,
        ),
        panic_activations=PanicActivations(
            last24h=sum(p["grantedAt"] >= now - timedelta(hours=24) for p in passes),
            active=sum(p["expiresAt"] > now for p in passes),
        ),
    )


def measure(client: CountingClient, runs: int, job: Callable[[], Any]) -> dict[str, Any]:
    times, rpcs, streamed = [], [], []
    for _ in range(runs):
        client.counter.reset()
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
        rpcs.append(sum(client.counter.calls.values()))
        streamed.append(client.counter.streamed)
    return {
        "wallSecMedian": round(statistics.median(times), 4),
        "rpcs": rpcs[-1],
        "rpcsAllRuns": sorted(set(rpcs)),
        "rpcsByMethod": dict(sorted(client.counter.calls.items())),
        "documentsStreamed": streamed[-1],
    }


def _measure_size(
    client: CountingClient,
    service: OpsService,
    source: AggregateMetricsSource,
    now: datetime,
    runs: int,
    naive_runs: int,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    minute = iter(range(10_000))  # each update is a new minute, as the schedule runs it
    update = measure(
        client, runs, lambda: service.update(now + timedelta(minutes=next(minute)), "bench")
    )
    aggregates = measure(client, runs, lambda: source.counts(now))
    naive = measure(client, naive_runs, lambda: naive_counts(client, now))
    return update, aggregates, naive


def run(sizes: list[int], runs: int, naive_runs: int) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-bench-ops-"))
    child, host = datastores.start_firestore_emulator(PROJECT, log_dir)
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        client = counting_client()
        writer = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        results: dict[str, Any] = {}
        for size in sizes:
            datastores.wipe_firestore(host, PROJECT)
            now = datetime.now(UTC)
            start = time.perf_counter()
            written = seed(writer, scaled(size), now)
            seed_sec = time.perf_counter() - start
            source = AggregateMetricsSource(client)
            alerts = AlertStore(client, notify=lambda: False)
            service = OpsService(
                source,
                OpsRepository(client),
                alerts,
                partial(deliver, alerts, WebhookNotifier("")),
                Panels(UnavailablePanel("-"), UnavailablePanel("-"), UnavailablePanel("-")),
                lambda: True,
                lambda: (False, None, None),
                alert_rules(),
            )
            update, aggregates, naive = _measure_size(
                client, service, source, now, runs, naive_runs
            )
            if naive_counts(client, now) != source.counts(now):
                raise SystemExit(f"naive and aggregation numbers differ at {size} documents")
            results[str(size)] = {
                "documents": written,
                "seedDocsPerSec": round(written / seed_sec),
                "update": update,
                "aggregates": aggregates,
                "naive": naive,
            }
        small, large = results[str(sizes[0])], results[str(sizes[-1])]
        results["ratios"] = {
            f"{kind}{what}": round(large[kind][key] / max(small[kind][key], 1e-9), 2)
            for kind in ("update", "aggregates", "naive")
            for what, key in (("Time", "wallSecMedian"), ("Rpcs", "rpcs"))
        }
        results["ratios"]["naiveDocumentsStreamed"] = round(
            large["naive"]["documentsStreamed"] / max(small["naive"]["documentsStreamed"], 1), 2
        )
        results["ratios"]["naiveOverAggregatesTimeAtLargest"] = round(
            large["naive"]["wallSecMedian"] / large["aggregates"]["wallSecMedian"], 2
        )
        return results
    finally:
        child.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--runs", type=int, default=5, help="measured updates per size")
    parser.add_argument("--naive-runs", type=int, default=2, help="measured naive runs per size")
    args = parser.parse_args()
    print(json.dumps(run(args.sizes, args.runs, args.naive_runs), indent=2))


if __name__ == "__main__":
    main()
