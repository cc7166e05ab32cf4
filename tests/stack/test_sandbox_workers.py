"""The sandbox with several worker processes on one port (``--workers``): what one
worker is told applies to requests either serves, what is read back is the sum of both,
and the parent stops with its workers (stack/sandbox/workers.py, control.py)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stack.group_commit import CommitStats
from stack.platform.procs import free_port
from stack.sandbox.capacity import Capacity, ServiceSim, merge_samples, portion
from stack.sandbox.control import merge_commit_stats, merge_health
from tests.conftest import Backends

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(("total", "count"), [(40, 2), (41, 2), (160, 3), (1, 2), (0, 2)])
def test_portions_add_up_and_differ_by_at_most_one(total: int, count: int) -> None:
    parts = [portion(total, i, count) for i in range(count)]
    assert sum(parts) == total and max(parts) - min(parts) <= 1


def test_each_worker_holds_its_portion_of_the_slots_and_the_queue() -> None:
    halves = [Capacity(5, 8, 8, 0.5, share=(i, 2)) for i in range(2)]
    assert [c.limit for c in halves] == [20, 20] and [c.queue_limit for c in halves] == [20, 20]
    for c in halves:
        c.resize(7)  # 56 slots
    assert sum(c.limit for c in halves) == 56 == Capacity(7, 8).limit
    assert Capacity(1, 1, 0, 0.5, share=(1, 2)).limit == 1  # never none at all


def test_merged_samples_are_the_sample_of_all_requests() -> None:
    def sim(latencies: list[float], busy: float, share: tuple[int, int]) -> ServiceSim:
        s = ServiceSim("svc", Capacity(5, 8, share=share))
        s.requests, s.errors, s.latencies_ms, s.busy_sec = len(latencies), 1, latencies, busy
        return s

    one = sim([float(ms) for ms in range(1, 101)], 4.0, (0, 1))
    halves = [sim([float(ms) for ms in range(1 + k, 101, 2)], 2.0, (k, 2)) for k in range(2)]
    merged = merge_samples("svc", [h.take() for h in halves], 10.0)
    alone = one.sample(10.0)
    assert merged is not None and alone is not None
    assert merged | {"errors": 1} == alone  # the errors: one per worker, summed
    assert merged["errors"] == 2 and halves[0].requests == 0  # taken: reset
    assert merge_samples("svc", [h.take() for h in halves], 10.0) is None  # idle


def test_health_and_commit_counts_merge_as_sums() -> None:
    a = {"svc": {"instances": 20, "inUse": 3, "waiting": 1, "shed": 5}}
    b = {"svc": {"instances": 20, "inUse": 2, "waiting": 0, "shed": 7}}
    assert merge_health([a, b]) == {"svc": {"instances": 20, "inUse": 5, "waiting": 1, "shed": 12}}
    stats = [
        {"groupCommit": True} | CommitStats(40, 10, 1, 9).as_json(),
        {"groupCommit": True} | CommitStats(20, 10, 0, 4).as_json(),
    ]
    merged = merge_commit_stats(stats)
    assert merged == {"groupCommit": True} | CommitStats(60, 20, 1, 9).as_json()
    assert merged["writesPerCommit"] == 3.0


# ------------------------------------------------------------------ two real workers


@contextmanager
def sandbox(backends: Backends, workers: int = 2) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``python -m stack.sandbox --workers N`` on a free port, ready (every worker up)."""
    port = free_port()
    env = os.environ | {
        "FIRESTORE_EMULATOR_HOST": backends.firestore_host,
        "GCLOUD_PROJECT": backends.project,
        "REDIS_URL": backends.redis_url,
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "stack.sandbox", "--workers", str(workers), "--port",
            str(port), "--redis-url", backends.redis_url]  # fmt: skip
    process = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            conn = connect(port)
            try:
                if get(conn, "/__health")[0] == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            assert time.monotonic() < deadline, "the sandbox did not become ready"
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the parent removes its control sockets
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> Any:
    payload = None if body is None else json.dumps(body)
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read())


def get(conn: http.client.HTTPConnection, path: str) -> Any:
    return call(conn, "GET", path)


@contextmanager
def worker_connections(
    port: int, workers: int = 2
) -> Iterator[dict[int, http.client.HTTPConnection]]:
    """Kept-alive connections, one landing on each worker (the kernel picks by hash)."""
    found: dict[int, http.client.HTTPConnection] = {}
    try:
        for _ in range(200):
            conn = connect(port)
            index = get(conn, "/__worker")[1]["index"]
            if index in found:
                conn.close()
            else:
                found[index] = conn
            if len(found) == workers:
                break
        assert len(found) == workers, f"connections reached only workers {sorted(found)}"
        yield found
    finally:
        for conn in found.values():
            conn.close()


def worker_pids(port: int) -> list[int]:
    with worker_connections(port) as conns:
        return [get(conn, "/__worker")[1]["pid"] for conn in conns.values()]


def test_a_fault_set_on_one_worker_applies_to_both_and_counts_are_summed(
    backends: Backends,
) -> None:
    with sandbox(backends) as (_, port), worker_connections(port) as conns:
        feed = {"loadRunId": "workers-test", "uid": "u1"}
        # the fault, set through worker 0, answers on both; set back through worker 1
        status, _ = call(conns[0], "POST", "/__faults", {"errorPct": 100, "ttlSec": 30})
        assert status == 200
        for conn in conns.values():
            assert call(conn, "POST", "/discovery/feed", feed) == (500, {"error": "injected fault"})
            assert get(conn, "/__worker")[1]["faults"]["errorPct"] == 100
        assert call(conns[1], "POST", "/__faults", {"errorPct": 0})[0] == 200
        for conn in conns.values():
            assert call(conn, "POST", "/discovery/feed", feed)[0] == 200
        # a resize through worker 1 reaches worker 0
        body = {"serviceId": "matching-engine", "instances": 7}
        assert call(conns[1], "POST", "/__resize", body) == (200, body)
        for conn in conns.values():
            assert get(conn, "/__worker")[1]["health"]["matching-engine"]["instances"] == 7
        # swipes served by each worker: the counts read back are the sums
        swipes = {0: 5, 1: 3}
        for index, count in swipes.items():
            for k in range(count):
                swipe = feed | {"uid": f"w{index}-{k}", "targetUid": "p", "direction": "right"}
                assert call(conns[index], "POST", "/swipe", swipe)[0] == 200
        local = {i: get(conn, "/__worker")[1] for i, conn in conns.items()}
        assert [local[i]["groupCommit"]["writes"] for i in (0, 1)] == [5, 3]
        for conn in conns.values():
            status, stats = get(conn, "/__group-commit")
            assert status == 200 and stats["writes"] == 8 and stats["groupCommit"] is True
            health = get(conn, "/__health")[1]["matching-engine"]
            assert health == {"instances": 7, "inUse": 0, "waiting": 0, "shed": 0}


def test_the_parent_stops_with_its_workers(backends: Backends) -> None:
    # SIGTERM to the parent: every worker stops, the parent exits 0
    with sandbox(backends) as (process, port):
        pids = worker_pids(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert not [pid for pid in pids if alive(pid)]
    # a worker that dies: the parent stops the other and exits 1 (its supervisor restarts it)
    with sandbox(backends) as (process, port):
        pids = worker_pids(port)
        os.kill(pids[1], signal.SIGKILL)
        assert process.wait(15) == 1
        assert not [pid for pid in pids if alive(pid)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
