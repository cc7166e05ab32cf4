"""The CPU probe counts what a test's process tree burns: live descendants by name, and
what was reaped, each once."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.plugins.cpu_probe import tree_cpu, tree_cpu_sec

BURN = "import time\nend = time.process_time() + {sec}\nwhile time.process_time() < end: pass\n"


def test_a_live_child_is_counted_by_name_and_once_more_after_it_is_reaped() -> None:
    me = os.getpid()
    before = tree_cpu_sec(me)
    script = BURN.format(sec=0.4) + "import sys; sys.stdout.write('done\\n'); sys.stdout.flush()\n"
    script += "time.sleep(30)\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        parts = tree_cpu(me)
        mine = parts[f"{os.path.basename(sys.executable)[:15]} {child.pid}"]
        assert 0.35 <= mine < 5.0, parts
        live = tree_cpu_sec(me) - before
        assert live >= 0.35, parts
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    # reaped: its CPU moved from the live part to the reaped one, not counted twice
    after = tree_cpu_sec(me) - before
    assert f"python {child.pid}" not in tree_cpu(me)
    assert abs(after - live) < 0.3, (live, after)


def test_a_grandchild_is_counted_through_its_parent() -> None:
    me = os.getpid()
    before = tree_cpu_sec(me)
    inner = BURN.format(sec=0.3)
    outer = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {inner!r}], check=True)\n"
        "sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", outer], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "done\n"
        assert tree_cpu_sec(me) - before >= 0.25  # the grandchild, reaped by its parent
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
