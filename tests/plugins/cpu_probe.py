"""Where the suite's CPU goes, per test file (opt-in: ``PACK391_CPU_PROBE=DIR``).

``make test``'s parallel phase is CPU-bound (docs/testing.md), so its wall time is the
suite's core-seconds over the cores: the file to shorten is the one that burns the most
CPU, which a duration does not show (a file that waits on real seconds costs time, not
cores). Each xdist worker measures, around every test (setup, call and teardown), the CPU
of its whole process tree: itself, every live descendant (the emulators, redis-server,
stacks, Chromium, the Firebase CLI, with what they reaped) and what it reaped itself. A
descendant measured alive and reaped later moves from one term to the other, so nothing
is counted twice. Per file it writes one JSON line to ``DIR/<worker>.jsonl``;
``python -m tests.plugins.cpu_probe DIR`` prints the table, most CPU first.

What a worker starts once for the session (its Firestore emulator, redis-server, the Auth
emulator) is charged to the file whose test started it, and their idle ticking to
whichever file runs: the first file on each worker shows the start's cost.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = "PACK391_CPU_PROBE"


TICK_SEC = 1.0 / os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, name, CPU seconds with what it reaped), from
    /proc (proc(5): ``stat`` fields 4 ppid, 14-17 utime, stime, cutime, cstime)."""
    found: dict[int, tuple[int, str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone between the listing and the read
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks = sum(int(f) for f in fields[11:15])
        found[int(entry.name)] = (int(fields[1]), name, ticks * TICK_SEC)
    return found


def tree_cpu(me: int) -> dict[str, float]:
    """CPU seconds of process ``me`` (``self``), what it reaped (``reaped``) and each live
    descendant (``<name> <pid>``, with what it reaped)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts = {"self": usage.ru_utime + usage.ru_stime, "reaped": reaped.ru_utime + reaped.ru_stime}
    procs = _processes()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)
    todo = list(children[me])
    while todo:
        pid = todo.pop()
        _, name, cpu = procs[pid]
        parts[f"{name} {pid}"] = cpu
        todo.extend(children[pid])
    return parts


def tree_cpu_sec(me: int) -> float:
    """CPU seconds of ``me`` and everything below it, live or reaped."""
    return sum(tree_cpu(me).values())


class CpuProbe:
    def __init__(self, out: Path, worker: str) -> None:
        self._out = out / f"{worker}.jsonl"
        self._me = os.getpid()
        self._files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self._tests: list[tuple[str, float, float]] = []
        self._parts: dict[str, dict[str, float]] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        before, wall = tree_cpu(self._me), time.monotonic()
        yield
        after, wall = tree_cpu(self._me), time.monotonic() - wall
        cpu = sum(after.values()) - sum(before.values())
        if cpu > 5.0:  # where a costly test's CPU went: the largest parts
            parts = {k: v - before.get(k, 0.0) for k, v in after.items()}
            gone = {k: -v for k, v in before.items() if k not in after}
            top = sorted({**parts, **gone}.items(), key=lambda kv: -abs(kv[1]))[:6]
            self._parts[item.nodeid] = {k: round(v, 1) for k, v in top}
        row = self._files[item.nodeid.split("::", 1)[0]]
        row[0] += cpu
        row[1] += wall
        row[2] += 1
        self._tests.append((item.nodeid, cpu, wall))

    def pytest_sessionfinish(self) -> None:
        with self._out.open("a") as out:
            for path, (cpu, wall, tests) in self._files.items():
                out.write(json.dumps({"file": path, "cpu": cpu, "wall": wall, "tests": tests}))
                out.write("\n")
        with self._out.with_suffix(".tests").open("a") as out:
            for nodeid, cpu, wall in self._tests:
                parts = self._parts.get(nodeid)
                row = {"test": nodeid, "cpu": cpu, "wall": wall, "parts": parts}
                out.write(json.dumps(row) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    where = os.environ.get(ENV)
    if not where or (os.environ.get("PYTEST_XDIST_WORKER") is None and config.option.numprocesses):
        return  # not asked for, or the xdist controller (its workers measure)
    Path(where).mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    config.pluginmanager.register(CpuProbe(Path(where), worker), "pack391-cpu-probe")


def main(argv: list[str]) -> None:
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for found in Path(argv[0]).glob("*.jsonl"):
        for line in found.read_text().splitlines():
            r = json.loads(line)
            row = rows[r["file"]]
            row[0] += r["cpu"]
            row[1] += r["wall"]
            row[2] += r["tests"]
    total = sum(r[0] for r in rows.values())
    print(f"{'file':70} {'cpu s':>8} {'wall s':>8} {'tests':>6} {'share':>6}")
    for path, (cpu, wall, tests) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        print(f"{path:70} {cpu:8.1f} {wall:8.1f} {tests:6.0f} {cpu / total:6.1%}")
    print(f"{'all':70} {total:8.1f}")
    if len(argv) > 1:  # the N costliest tests
        measured = [
            json.loads(line)
            for found in Path(argv[0]).glob("*.tests")
            for line in found.read_text().splitlines()
        ]
        for t in sorted(measured, key=lambda t: -t["cpu"])[: int(argv[1])]:
            print(f"{t['test'][:100]:100} {t['cpu']:8.1f} {t['wall']:8.1f}")
            if t.get("parts"):
                print(f"    {t['parts']}")


if __name__ == "__main__":
    main(sys.argv[1:])
