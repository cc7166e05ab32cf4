"""The supervisor wakes a child left stopped with no fault lease, and nothing else: a pid
it remembers for a child that died (and that a fault holds down, so it is not restarted
yet) is free, and on this machine (pid_max 32768) soon another process's, which someone
may have stopped on purpose. Once, the chaos test's supervisor woke another test's
emulator that way, in the middle of that test's pause."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.platform import procs
from stack.platform.supervisor import Supervised, Supervisor


def state(pid: int) -> str:
    deadline = time.monotonic() + 5
    while True:
        stat = procs.process_stat(pid)
        assert stat is not None, f"pid {pid} is gone"
        if stat[0] != "R" or time.monotonic() > deadline:
            return stat[0]
        time.sleep(0.01)


def stopped(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while state(pid) != "T":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[procs.Child]:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    child = procs.Child("sleeper", process, tmp_path / "sleeper.log")
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait()


def supervising(tmp_path: Path, child: procs.Child) -> Supervisor:
    sup = Supervisor(tmp_path)
    sup.supervised["redis"] = Supervised(child, None, None)
    return sup


def test_a_child_of_its_own_left_stopped_is_woken_after_the_grace(
    tmp_path: Path, sleeper: procs.Child
) -> None:
    sup = supervising(tmp_path, sleeper)
    os.kill(sleeper.process.pid, signal.SIGSTOP)
    assert stopped(sleeper.process.pid)
    sup.wake_stopped((), 0.0)  # first seen stopped
    sup.wake_stopped([sleeper.process.pid], 0.0)  # a fault's lease holds it: left alone
    assert state(sleeper.process.pid) == "T"
    sup.wake_stopped((), 0.0)
    sup.wake_stopped((), 0.0)
    assert state(sleeper.process.pid) == "S"


def test_the_pid_of_a_dead_child_is_never_signalled(tmp_path: Path, sleeper: procs.Child) -> None:
    """The dead child's pid taken by another process, stopped by its own owner: the
    supervisor leaves it stopped (a dead Popen whose pid now names the sleeper, which is
    how a reused pid looks from the supervisor)."""
    dead = subprocess.Popen(["true"], start_new_session=True)
    dead.wait()
    dead.pid = sleeper.process.pid  # what pid reuse does to the number it remembers
    sup = supervising(tmp_path, procs.Child("redis", dead, tmp_path / "redis.log"))
    os.kill(sleeper.process.pid, signal.SIGSTOP)
    assert stopped(sleeper.process.pid)
    for _ in range(3):
        sup.wake_stopped((), 0.0)
    assert state(sleeper.process.pid) == "T"
