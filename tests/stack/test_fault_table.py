"""The fault table of ``stack.chaos.faults`` without a running stack: options checked by
name, every fault a row with plan/apply/undo, leases undone by the row they name.
(tests/stack/test_faults.py applies each fault to a real stack.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stack.chaos import config, faults
from stack.platform import procs
from stack.platform.handle import ChildInfo, NoStackError, StackHandle


def handle_at(tmp_path: Path, **overrides: object) -> StackHandle:
    fields: dict[str, object] = {
        "path": tmp_path / "stack.json",
        "supervisor_pid": os.getpid(),
        "project": "demo-avalo",
        "region": "us-central1",
        "functions_url": "http://127.0.0.1:1",
        "sandbox_url": "http://127.0.0.1:1",
        "firestore_host": "127.0.0.1:1",
        "redis_url": "redis://127.0.0.1:1",
        "redis_server_port": None,
        "redis_proxy_control": None,
        "faults_dir": tmp_path / "stack.faults",
    }
    fields.update(overrides)
    return StackHandle(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 5.0}, "unknown options ['delay']"),
        ({"max_sec": 0.0}, "max_sec must be > 0"),
        ({"error_pct": 101.0}, "error_pct must be within 0-100"),
        ({"error_pct": -1.0}, "error_pct must be within 0-100"),
        ({"delay_ms": -1.0}, "delay_ms must be >= 0"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, float], message: str) -> None:
    with pytest.raises(faults.FaultError, match=message.replace("[", r"\[").replace("]", r"\]")):
        faults.parse_options(options)


def test_options_default_and_parse() -> None:
    # delay_ms unset: each fault's own default (redis-slow 200 ms, cloudrun-slow 30 s)
    assert faults.parse_options({}) == faults.FaultOptions(300.0, 60.0, None, 50.0)
    assert faults.parse_options({"delay_ms": 5, "max_sec": 2}).delay_ms == 5.0
    assert faults.parse_options({}).delay_or(200.0) == 200.0
    assert faults.parse_options({"delay_ms": 0}).delay_or(200.0) == 0.0


def test_the_table_is_the_one_list_of_faults() -> None:
    assert faults.FAULTS == (
        "redis-kill",
        "redis-pause",
        "redis-slow",
        "firestore-pause",
        "functions-kill",
        "sandbox-errors",
        "cloudrun-slow",
        "redis-primary-kill",
    )
    # the chaos run's order is the table's, without the cluster-only fault (make chaos
    # runs against one Redis behind its latency proxy)
    assert faults.CLUSTER_FAULTS == ("redis-primary-kill",)
    assert config.ALL_FAULTS == (
        "redis-kill",
        "redis-pause",
        "redis-slow",
        "firestore-pause",
        "functions-kill",
        "sandbox-errors",
        "cloudrun-slow",
    )
    leased = {f.name: f.leased for f in faults.FAULT_TABLE}
    assert leased == {
        "redis-kill": True,  # held down by its lease until undone
        "redis-pause": True,
        "redis-slow": True,
        "firestore-pause": True,
        "functions-kill": False,
        "sandbox-errors": True,
        "cloudrun-slow": True,  # undone from its lease, and by the sandbox's own ttl
        "redis-primary-kill": True,  # held down by its lease until undone
    }
    described = faults.describe().splitlines()
    assert [line.split()[0] for line in described] == list(faults.FAULTS)


def test_an_unknown_fault_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    with pytest.raises(faults.FaultError, match="unknown fault 'redis-explode': one of redis-kill"):
        faults.start_fault(handle_at(tmp_path), "redis-explode")


def test_plans_refuse_what_this_stack_does_not_have(tmp_path: Path) -> None:
    handle = handle_at(tmp_path)  # an external Redis: no child, no latency proxy
    options = faults.parse_options({})
    with pytest.raises(NoStackError, match="did not start redis itself"):
        faults.BY_NAME["redis-pause"].plan(handle, options)
    with pytest.raises(faults.FaultError, match="no latency proxy"):
        faults.BY_NAME["redis-slow"].plan(handle, options)
    with pytest.raises(faults.FaultError, match="runs no Redis Cluster of its own"):
        faults.BY_NAME["redis-primary-kill"].plan(handle, options)
    # one Redis of the stack's own, behind its proxy: still no cluster to kill a primary of
    single = handle_at(
        tmp_path,
        redis_server_port=7,
        children={"redis": ChildInfo(os.getpid(), 7), "redis-proxy": ChildInfo(os.getpid(), 8)},
    )
    with pytest.raises(faults.FaultError, match=r"--redis-cluster"):
        faults.BY_NAME["redis-primary-kill"].plan(single, options)
    # both are StackErrors: the CLI answers them with exit 2 and the message
    assert issubclass(faults.FaultError, procs.StackError)
    assert issubclass(NoStackError, procs.StackError)


def test_plans_write_down_what_undo_needs(tmp_path: Path) -> None:
    handle = handle_at(tmp_path, redis_proxy_control="http://127.0.0.1:9")
    options = faults.parse_options({"delay_ms": 150, "max_sec": 20, "error_pct": 30})
    slow = faults.BY_NAME["redis-slow"].plan(handle, options)
    assert slow.record == {"control": "http://127.0.0.1:9", "delayMs": 150.0, "ttlSec": 20.0}
    assert slow.notes == "Redis proxy delay 150 ms per command"
    errors = faults.BY_NAME["sandbox-errors"].plan(handle, options)
    assert errors.record == {"url": "http://127.0.0.1:1", "errorPct": 30.0, "ttlSec": 20.0}
    stall = faults.BY_NAME["cloudrun-slow"].plan(handle, options)
    assert stall.record == {"url": "http://127.0.0.1:1", "delayMs": 150.0, "ttlSec": 20.0}
    assert stall.notes == "Cloud Run stand-in (sandbox resize hook) answers after 150 ms"
    json.dumps([slow.record, errors.record, stall.record])  # a lease holds them: plain JSON
    # without delay_ms each takes its own default
    defaults = faults.parse_options({"max_sec": 20})
    assert faults.BY_NAME["redis-slow"].plan(handle, defaults).record["delayMs"] == 200.0
    assert faults.BY_NAME["cloudrun-slow"].plan(handle, defaults).record["delayMs"] == 30000.0


def test_the_cluster_kill_plans_on_a_cluster_stack(tmp_path: Path) -> None:
    nodes = {f"redis-{i}": ChildInfo(100 + i, 7000 + i) for i in (1, 2, 3)}
    handle = handle_at(tmp_path, redis_url="redis+cluster://127.0.0.1:7001", children=nodes)
    plan = faults.BY_NAME["redis-primary-kill"].plan(handle, faults.parse_options({}))
    assert plan.record == {"pid": 102, "child": "redis-2"}
    assert plan.notes == "redis-2 pid 102 (port 7002) SIGKILLed and held down"


def test_a_held_node_is_named_by_its_live_lease(tmp_path: Path) -> None:
    """The supervisor does not restart a child a live hold-down lease names."""
    handle = handle_at(tmp_path)
    write_lease(handle, "a", "redis-primary-kill", {"pid": 102, "child": "redis-2"}, 1e12, 1)
    write_lease(handle, "b", "redis-pause", {"pid": 11}, 1e12, 1)
    assert faults.held_children(handle.faults_dir) == {"redis-2"}
    assert faults.leased_pids(handle.faults_dir) == {11}
    # an expired hold is released by the reaper; the supervisor then restarts the node
    done = faults.reap(handle, now=2e12)
    assert any("released redis-2: the supervisor restarts it" in line for line in done)
    assert faults.held_children(handle.faults_dir) == set()


def write_lease(handle: StackHandle, name: str, fault: str, undo: dict[str, object],
                undo_by: float, holder: int) -> Path:  # fmt: skip
    handle.faults_dir.mkdir(parents=True, exist_ok=True)
    path = handle.faults_dir / f"{name}.json"
    body = {"fault": fault, "holderPid": holder, "appliedAt": 0, "undoBy": undo_by, "undo": undo}
    path.write_text(json.dumps(body))
    return path


def test_leased_pids_are_the_pause_faults_pids(tmp_path: Path) -> None:
    handle = handle_at(tmp_path)
    write_lease(handle, "a", "redis-pause", {"pid": 11}, 1e12, os.getpid())
    write_lease(handle, "b", "firestore-pause", {"pid": 12}, 1e12, os.getpid())
    write_lease(handle, "c", "redis-slow", {"control": "http://x", "pid": 13}, 1e12, os.getpid())
    assert faults.leased_pids(handle.faults_dir) == {11, 12}


def test_reap_undoes_by_the_row_the_lease_names(tmp_path: Path) -> None:
    handle = handle_at(tmp_path)
    # a pause whose pid is gone, past its deadline: undone (nothing to wake), lease removed
    gone = write_lease(handle, "a", "redis-pause", {"pid": 2**22 + 7}, 10.0, os.getpid())
    # a live lease of this process within its deadline: left alone
    live = write_lease(handle, "b", "firestore-pause", {"pid": 1}, 1e12, os.getpid())
    # a lease of a fault this version does not know: removed, said so
    odd = write_lease(handle, "c", "disk-fill", {}, 10.0, os.getpid())
    done = faults.reap(handle, now=100.0)
    assert done == [
        "undid redis-pause left applied (its deadline passed): "
        f"pid {2**22 + 7} is gone (restarted?): nothing to wake",
        "undid disk-fill left applied (its deadline passed): nothing to undo (unknown fault)",
    ]
    assert not gone.exists() and not odd.exists() and live.exists()


def test_a_cloud_run_stall_left_behind_is_undone_or_ends_by_its_ttl(tmp_path: Path) -> None:
    """Its undo is a request to the sandbox; when that fails, the reaper says the sandbox's
    own ttl (the lease's max_sec) still ends the stall, and removes the lease."""
    handle = handle_at(tmp_path)  # the sandbox at 127.0.0.1:1: nothing answers there
    undo = {"url": "http://127.0.0.1:1", "delayMs": 30000.0, "ttlSec": 20.0}
    lease = write_lease(handle, "a", "cloudrun-slow", undo, 10.0, os.getpid())
    (done,) = faults.reap(handle, now=100.0)
    assert done.startswith("undid cloudrun-slow left applied (its deadline passed): undo failed (")
    assert done.endswith("; the child's own ttl still ends it")
    assert not lease.exists()
