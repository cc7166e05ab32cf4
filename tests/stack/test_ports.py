"""Ports for parallel test runs: a range of our own shared through one cursor,
blocks claimed per process, and readiness that only believes the listener it started."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.platform import datastores, ports, procs


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ports.LOCK_DIR_ENV, str(tmp_path))
    return tmp_path


def _take(lo: int, hi: int, count: int, out: multiprocessing.Queue[list[int]]) -> None:
    out.put([ports.take_from(lo, hi) for _ in range(count)])


def test_processes_sharing_a_range_never_get_the_same_port(lock_dir: Path) -> None:
    lo, hi = ports.PORT_BLOCKS_BASE + 5000, ports.PORT_BLOCKS_BASE + 5199  # 25000-25199
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[list[int]] = context.Queue()
    workers = [context.Process(target=_take, args=(lo, hi, 60, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    taken = [port for _ in workers for port in out.get(timeout=60)]
    for worker in workers:
        worker.join(30)
    assert len(taken) == 180 and len(set(taken)) == 180  # none handed out twice
    assert all(lo <= port <= hi for port in taken)


def test_a_bound_port_is_skipped_and_the_cursor_wraps(lock_dir: Path) -> None:
    lo = ports.PORT_BLOCKS_BASE + 5300
    with socket.socket() as held:
        held.bind(("127.0.0.1", lo + 1))
        held.listen()
        assert [ports.take_from(lo, lo + 2) for _ in range(4)] == [lo, lo + 2, lo, lo + 2]


def test_free_port_follows_the_range_setting(
    lock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ports.PORT_RANGE_ENV, "25400-25409")
    assert {procs.free_port() for _ in range(10)} == set(range(25400, 25410))
    monkeypatch.delenv(ports.PORT_RANGE_ENV)
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert procs.free_port() >= low  # the kernel's ephemeral choice
    for bad in ("", "25400", "x-y", "500-600", "26000-25000", "60000-70000"):
        if bad:
            with pytest.raises(ValueError, match=ports.PORT_RANGE_ENV):
                ports.parse_range(bad)


def test_blocks_lie_outside_the_ephemeral_range_and_the_stacks_defaults() -> None:
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    top = ports.PORT_BLOCKS_BASE + ports.PORT_BLOCKS * ports.PORT_BLOCK_SIZE - 1
    assert top < low
    assert ports.PORT_BLOCKS_BASE > 9999  # 5001, 5002, 8080, 9099, the CLI's 4000-4500


HOLD = """\
import sys, time
from stack.platform import ports
block = ports.claim_block(int(sys.argv[1]))
print(block.index, flush=True)
time.sleep(60)
"""


def test_a_block_held_by_another_process_is_not_claimed(lock_dir: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, "7"],
        stdout=subprocess.PIPE, text=True, env={"PACK391_PORT_LOCK_DIR": str(lock_dir),
                                              "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "7"
        mine = ports.claim_block(7)
        assert mine.index == 8 and mine.lo == ports.PORT_BLOCKS_BASE + 8 * ports.PORT_BLOCK_SIZE
        mine.release()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    again = ports.claim_block(7)  # released when its holder died
    assert again.index == 7
    again.release()


@pytest.fixture
def impostor() -> Iterator[int]:
    """A listener on a port of our block that answers PING with +PONG, as another
    worker's redis-server would."""
    server = socket.socket()
    server.bind(("127.0.0.1", procs.free_port()))
    server.listen()
    port: int = server.getsockname()[1]
    stop = threading.Event()

    def answer() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(64)
                conn.sendall(b"+PONG\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(5)
    server.close()


def test_readiness_believes_only_the_listener_the_child_holds(
    impostor: int, tmp_path: Path
) -> None:
    import os

    assert procs.owns_listener(os.getpid(), impostor)
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert not procs.owns_listener(other.pid, impostor)
    finally:
        other.kill()
        other.wait()
    # a redis-server told to use the impostor's port cannot bind it; the PONG it gets
    # there is not its own, so the start fails instead of handing out the impostor
    with pytest.raises(procs.StackError, match="redis exited"):
        datastores.start_redis(tmp_path, port=impostor)
