"""The local Redis Cluster (three primaries, ``stack.platform.datastores``) and
``pack391 serve --redis-cluster``: a killed node, started again with its argv, rejoins
with its slots (empty); the stack's clients take the cluster URL; ``redis-primary-kill``
is one window the stack recovers from."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from redis.crc import key_slot

from shared import thresholds
from shared.redis import client_for_url
from stack.chaos import faults
from stack.cli import build_parser
from stack.cli.serve import REDIS_CLUSTER_ENV, cluster_wanted
from stack.platform import datastores, procs
from stack.platform.handle import StackHandle, cluster_nodes, health
from tests.stack.test_local_stack import alive
from tests.stack.test_supervisor import Served, call, rate_limit_works, serve

# ---------------------------------------------------------------- the cluster itself


def test_no_redis_cli_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "redis-cli" else real(name))
    with pytest.raises(procs.StackError, match="No redis-cli on PATH"):
        datastores.start_redis_cluster(tmp_path)


def test_a_failed_create_says_what_redis_cli_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "redis-cli"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '[ERR] Node 127.0.0.1:1 is not empty.'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(procs.StackError, match=r"(?s)create failed \(1\).*is not empty"):
        datastores.start_redis_cluster(tmp_path / "logs")


def test_the_flag_and_the_environment_ask_for_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser("serve").parse_args(["serve", "--redis-cluster"]).redis_cluster is True
    assert build_parser("serve").parse_args(["serve"]).redis_cluster is False
    monkeypatch.delenv(REDIS_CLUSTER_ENV, raising=False)
    assert cluster_wanted(True) and not cluster_wanted(False)
    monkeypatch.setenv(REDIS_CLUSTER_ENV, "1")
    assert cluster_wanted(False)


# ---------------------------------------------------------------- the stack on it


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # PACK391_REDIS_CLUSTER=1, as `make run` takes it: the same as --redis-cluster
    with serve(tmp_path_factory.mktemp("cluster"), **{REDIS_CLUSTER_ENV: "1"}) as running:
        yield running


def test_state_file_describes_the_cluster(served: Served) -> None:
    state = json.loads(served.state.read_text())
    assert set(state["children"]) == {
        "firestore-emulator", "redis-1", "redis-2", "redis-3", "functions", "sandbox",
    }  # fmt: skip
    first = state["children"]["redis-1"]["port"]
    assert state["redisUrl"] == f"redis+cluster://127.0.0.1:{first}"
    assert state["redisServerPort"] is None  # no single redis-server
    assert state["redisProxyControl"] is None  # and no latency proxy
    handle = served.handle()
    assert cluster_nodes(handle) == {
        name: state["children"][name]["port"] for name in ("redis-1", "redis-2", "redis-3")
    }
    assert health(handle) == {}
    assert "Redis Cluster: redis-1" in served.output()


def test_the_rate_limiter_decides_on_the_cluster(served: Served) -> None:
    result = rate_limit_works(served.handle())
    assert result["allowed"] is True and result["reason"] == "ok"


def test_redis_slow_needs_the_proxy_a_cluster_has_not(served: Served) -> None:
    with pytest.raises(faults.FaultError, match="no latency proxy"):
        faults.start_fault(served.handle(), "redis-slow")


def outage_answers(handle: StackHandle) -> dict[str, requests.Response]:
    """One checkRateLimit of each class, each as a new user (whose slots may be on any
    primary), until every class has answered by its failure mode (the cluster stops
    serving every slot once its nodes agree the primary failed: 2 s of node timeout)."""
    deadline = time.monotonic() + 20
    while True:
        answers = {
            cls: call(handle, "pack391_checkRateLimit", {"endpointClass": cls})
            for cls in thresholds.RATE_LIMIT_PER_MIN
            if cls not in ("staff", "service")
        }
        failed = [
            cls
            for cls, r in answers.items()
            if r.status_code == 503
            or (r.status_code == 200 and r.json()["result"]["reason"] == "redis_unavailable")
        ]
        if len(failed) == len(answers) or time.monotonic() > deadline:
            return answers
        time.sleep(0.2)


def test_a_killed_primary_rejoins_and_the_window_recovers(served: Served) -> None:
    """The supervisor starts a killed node again with its argv (its port and data
    directory): it rejoins as itself (its nodes.conf), with its slots, empty, as a
    replaced Memorystore node; the other primaries keep their data."""
    before = served.handle()
    old = before.children["redis-2"]
    assert old.port is not None
    written = [f"pack391:test:{i}" for i in range(30)]  # keys on every primary
    client = client_for_url(before.redis_url)
    try:
        for key in written:
            client.set(key, "1")
    finally:
        client.close()  # its connection to the node about to die would be left behind
    with redis.Redis(port=old.port, socket_timeout=5, decode_responses=True) as node:
        node_id = node.execute_command("CLUSTER MYID")
        served_slots = range(*_slot_range(node, node_id))
        on_victim = {key for key in written if key_slot(key.encode()) in served_slots}
    assert on_victim and len(on_victim) < len(written)
    undo = faults.start_fault(before, "redis-primary-kill", max_sec=60, recover_sec=45)
    try:
        answers = outage_answers(before)
    finally:
        window = undo()
    # every class by its documented failure mode while the cluster cannot answer, at once
    for cls, response in answers.items():
        assert response.elapsed.total_seconds() < 2, (cls, response.elapsed)
        if cls in thresholds.RATE_LIMIT_FAIL_CLOSED_CLASSES:
            assert response.status_code == 503, (cls, response.text)
            error = response.json()["error"]
            assert error["status"] == "UNAVAILABLE" and error["details"]["retryAfterSec"] > 0
        else:
            assert response.status_code == 200, (cls, response.text)
            result = response.json()["result"]
            assert (result["allowed"], result["reason"]) == (True, "redis_unavailable"), cls
    assert window.recovered_at is not None, window.notes
    assert f"redis-2 pid {old.pid} (port {old.port}) SIGKILLed and held down" in window.notes
    assert "released redis-2: the supervisor restarts it" in window.notes
    assert "(exit -9)" in served.wait_line("restarted redis-2", 10)
    after = served.handle()
    assert after.children["redis-2"].port == old.port  # the same port and data directory
    assert after.children["redis-2"].pid != old.pid
    assert datastores.cluster_ok(list(cluster_nodes(after).values()))
    assert datastores.cluster_info(old.port)["cluster_slots_ok"] == "16384"
    with redis.Redis(port=old.port, socket_timeout=5, decode_responses=True) as node:
        assert node.execute_command("CLUSTER MYID") == node_id  # itself, from nodes.conf
    client = client_for_url(after.redis_url)
    try:
        kept = {key for key in written if client.get(key) == "1"}
    finally:
        client.close()
    assert kept == set(written) - on_victim  # its slots came back empty, the others kept
    assert rate_limit_works(after)["reason"] == "ok"
    assert served.process.poll() is None


def _slot_range(node: redis.Redis, node_id: str) -> tuple[int, int]:
    """The slots ``node_id`` serves (one range per primary here), as range() bounds."""
    for row in node.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
        start, end, primary = row[0], row[1], row[2]
        if primary[2] == node_id:
            return int(start), int(end) + 1
    raise AssertionError(f"{node_id} serves no slots")


def test_stopping_leaves_no_node_and_no_data(served: Served) -> None:
    handle = served.handle()
    pids = [handle.children[name].pid for name in cluster_nodes(handle)]
    data_dirs = []
    for port in cluster_nodes(handle).values():
        with redis.Redis(port=port, socket_timeout=5, decode_responses=True) as node:
            data_dirs.append(Path(node.config_get("dir")["dir"]))
    assert len(pids) == 3 and all(d.is_dir() for d in data_dirs)
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if alive(pid)] == []
    assert [d for d in data_dirs if d.exists()] == []
