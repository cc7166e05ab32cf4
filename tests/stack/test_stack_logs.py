"""Bounded output of the local stack: capped child logs, a quiet scheduler, and load
progress that stays readable when stderr is not a terminal."""

from __future__ import annotations

import io
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.targets import minimal_app
from functions.load.scenarios import build_plan
from stack.aioserve import served_aiohttp
from stack.loadtest import ProgressPrinter, run_local
from stack.platform import logs, procs
from stack.platform.scheduler import start_scheduler


def test_a_child_log_over_its_cap_is_rotated_and_the_child_writes_on(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "sys.stdout.write('x' * 200_000); sys.stdout.flush()\n"
        "time.sleep(1.0)\n"
        "print('after the rotation', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = procs.spawn("loud", [sys.executable, "-c", script], tmp_path, log_max_bytes=50_000)
    try:
        deadline = time.monotonic() + 10
        while child.log_path.stat().st_size < 200_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert logs.LOG_CAPPER.check_once().count(child.log_path) == 1
        assert logs.rotated_path(child.log_path).stat().st_size >= 200_000
        while "after" not in child.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        # appended at the new end (O_APPEND), not at the old offset: no 200 KB hole
        assert child.log_path.read_text() == "after the rotation\n"
        assert logs.LOG_CAPPER.check_once().count(child.log_path) == 0
        assert child.log_tail(2).splitlines()[-1] == "after the rotation"
    finally:
        child.stop()


def test_a_restarted_child_appends_and_a_fresh_one_truncates(tmp_path: Path) -> None:
    for append in (False, True):
        procs.spawn("twice", ["echo", f"append={append}"], tmp_path, append=append).process.wait(5)
    text = (tmp_path / "twice.log").read_text()
    assert text.startswith("append=False\n") and text.rstrip().endswith("append=True")
    procs.spawn("twice", ["echo", "fresh"], tmp_path).process.wait(5)
    assert (tmp_path / "twice.log").read_text() == "fresh\n"


def test_the_scheduler_logs_one_info_line_per_run_and_apscheduler_stays_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    functions = {"pack391_tick": {"trigger": "schedule", "schedule": "0 0 1 1 *"}}
    with served_aiohttp(minimal_app()) as url:
        scheduler = start_scheduler(url, "demo-project", "us-central1", functions)
        try:
            assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
            caplog.clear()
            job = scheduler.get_job("pack391_tick")
            assert job is not None
            job.modify(next_run_time=datetime.now(UTC))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                r.name == "pack391.scheduler" for r in caplog.records
            ):
                time.sleep(0.05)
            time.sleep(0.2)  # whatever APScheduler would log after the run
        finally:
            scheduler.shutdown(wait=True)
    ours = [r for r in caplog.records if r.name == "pack391.scheduler"]
    assert len(ours) == 1 and ours[0].levelno == logging.INFO
    message = ours[0].getMessage()
    assert message.startswith("scheduled pack391_tick ok in ") and message.endswith(" s")
    noise = [r for r in caplog.records if r.name.startswith("apscheduler")]
    assert all(r.levelno >= logging.WARNING for r in noise), [r.getMessage() for r in noise]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_is_a_line_every_few_seconds() -> None:
    out, clock = io.StringIO(), _Clock()
    printer = ProgressPrinter(out, every_sec=5.0, clock=clock)
    for step in range(25):  # an update every 0.5 s for 12 s
        clock.now = step * 0.5
        printer.show(f"at {clock.now:.1f}")
    printer.end()
    assert out.getvalue().splitlines() == ["at 0.0", "at 5.0", "at 10.0", "at 12.0"]
    assert "\r" not in out.getvalue()


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    printer = ProgressPrinter(out, every_sec=5.0)
    printer.show("one")
    printer.show("two")
    printer.end()
    assert out.getvalue() == "\rone\rtwo\n"


def test_a_load_run_prints_progress_lines_when_stderr_is_not_a_terminal(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with served_aiohttp(minimal_app()) as url:
        plan = build_plan("live_calls", url, rps=20, duration_sec=3, shards=1)
        result = run_local(plan, "progress-test", quiet=False, progress_every_sec=1.0)
    assert result["summary"]["requests"] == 60
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "sent" in line]
    assert "\r" not in err and 3 <= len(lines) <= 8, err
    assert all("errors" in line and "shed" in line for line in lines)
