"""``make bench-stack``'s measurements around a step (:mod:`bench.stack` runs the steps).

Per step: each process's ``utime + stime`` from ``/proc/<pid>/stat`` (the generator: this
process and its reaped workers) as CPU-seconds and % of one core per component, a
component being its process and every process below it that is not another component
(the sandbox's workers are its children), each process of a component of several also on
a row of its own, ``component/pid`` (:func:`cpu_table`, :func:`render_table`); the
machine's busy share of all its cores from ``/proc/stat`` (:func:`machine_busy`); which
process ran out of CPU, if one did (:func:`cpu_limit`); the seconds until the sandbox is
idle again;
its group-commit counters (``GET /__group-commit``); the machine's load average; the
documents the run wrote to Firestore; and the emulator alone (single-document writes per
second from one async client). :class:`Step` is one step's record and its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.collections import LOAD_SANDBOX_COLLECTIONS
from stack.platform import procs

IDLE_WAIT_MAX_SEC = 30.0
"""How long to wait for the sandbox to be idle after a step."""

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ CPU sampling


def cpu_seconds(pid: int) -> float | None:
    """``utime + stime`` of a live process (all its threads), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def generator_cpu_seconds() -> float:
    """This process and its reaped children (the load workers ``run_local`` forks)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def component_processes(pids: Mapping[str, int]) -> dict[str, list[int]]:
    """Each component's pid and the processes below it that are not (below) another
    component: the sandbox's workers are the sandbox's, the stack's children are not the
    supervisor's."""
    children = procs.children_map()
    own = set(pids.values())
    return {name: procs.process_tree(pid, children, own) for name, pid in pids.items()}


def sample_cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU-seconds so far of each component (``generator`` from
    :func:`generator_cpu_seconds`, the others over :func:`component_processes`), and of
    each process of a component of several as ``component/pid``."""
    sample = {"generator": generator_cpu_seconds()}
    for name, tree in component_processes(pids).items():
        each = {pid: sec for pid in tree if (sec := cpu_seconds(pid)) is not None}
        if each:
            sample[name] = sum(each.values())
        if len(tree) > 1:
            sample |= {f"{name}/{pid}": sec for pid, sec in each.items()}
    return sample


def cpu_table(
    before: Mapping[str, float], after: Mapping[str, float], wall_sec: float
) -> dict[str, dict[str, float]]:
    """Per component (then per process, ``component/pid``): CPU-seconds in the window, %
    of one core, share of all the components' CPU."""
    used = {name: max(0.0, after[name] - before[name]) for name in after if name in before}
    total = sum(sec for name, sec in used.items() if "/" not in name) or 1.0

    def order(item: tuple[str, float]) -> tuple[float, str]:
        component = item[0].split("/")[0]
        return (-used.get(component, item[1]), item[0])

    return {
        name: {
            "cpuSec": round(sec, 2),
            "pctOfCore": round(100.0 * sec / wall_sec, 1) if wall_sec > 0 else 0.0,
            "sharePct": round(100.0 * sec / total, 1),
        }
        for name, sec in sorted(used.items(), key=order)
    }


def machine_ticks() -> tuple[int, int]:
    """``(busy, all)`` jiffies of every core since boot, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """% of all the machine's cores busy between two :func:`machine_ticks` (every process,
    the stack's and anyone else's)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100.0 * busy / total, 1) if total > 0 else 0.0


CORE_LIMIT_PCT = 90.0
"""A process at this % of one core has run out of CPU (the Python processes are bound
to one core by the GIL)."""
MACHINE_LIMIT_PCT = 95.0
"""The machine at this % of all its cores has run out of CPU."""


def busiest_process(step: Step, shards: int = 1) -> tuple[str, float] | None:
    """The single process with the most CPU in ``step`` and its % of one core (each
    process of a component of several on its own; the generator by its mean load
    worker)."""
    rows = step.cpu
    split = {name.split("/")[0] for name in rows if "/" in name}
    single: dict[str, float] = {}
    for name, row in rows.items():
        if name == "generator":
            single[f"generator (mean of {shards} load workers)"] = row["pctOfCore"] / shards
        elif "/" in name or name not in split:
            single[name] = row["pctOfCore"]
    return max(single.items(), key=lambda item: item[1], default=None)


def cpu_limit(step: Step, shards: int = 1) -> dict[str, Any] | None:
    """What ran out of CPU during ``step``: the busiest single process at
    :data:`CORE_LIMIT_PCT` of one core or more (a component of several processes counts
    by each of them; the generator by its mean load worker), else the machine at
    :data:`MACHINE_LIMIT_PCT` of its cores or more; None when neither did."""
    busiest = busiest_process(step, shards)
    machine = step.extra.get("machineBusyPct")
    if busiest is not None and busiest[1] >= CORE_LIMIT_PCT:
        return {"rps": step.rps, "process": busiest[0], "pctOfCore": round(busiest[1], 1),
                "machineBusyPct": machine}  # fmt: skip
    if machine is not None and machine >= MACHINE_LIMIT_PCT:
        return {"rps": step.rps, "process": "the machine (all cores)", "machineBusyPct": machine}
    return None


# ------------------------------------------------------------------ one step


@dataclass
class Step:
    rps: float
    passed: bool
    summary: dict[str, Any]
    wall_sec: float
    cpu: dict[str, dict[str, float]]
    idle_after_sec: float | None = None
    """Seconds until the sandbox had nothing in flight or queued after the step."""
    run_id: str = ""
    docs_written: int | None = None
    group_commit: dict[str, Any] | None = None
    """The sandbox's commit counters over the step (:func:`commit_delta`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def brief(self) -> dict[str, Any]:
        s = self.summary
        return {
            "rps": self.rps,
            "passed": self.passed,
            "achievedRps": s["achievedRps"],
            "latencyMs": s["latencyMs"],
            "errors": s["errors"],
            "errorRatePct": s["errorRatePct"],
            "errorsByKind": s["errorsByKind"],
            "shed": s["shed"],
            "shedRatePct": s["shedRatePct"],
            "dropped": s["dropped"],
            "idleAfterSec": self.idle_after_sec,
            "groupCommit": self.group_commit,
            "loadAverage": self.extra.get("loadAverage"),
            "writesPerRequest": (
                round(self.docs_written / s["requests"], 3)
                if self.docs_written is not None and s["requests"]
                else None
            ),
        }


def render_table(step: Step) -> str:
    lines = [f"CPU by component at {step.rps:g} RPS ({step.wall_sec:.1f} s of wall time):",
             f"{'component':<24}{'CPU-s':>8}{'% of a core':>13}{'share':>8}"]  # fmt: skip
    for name, row in step.cpu.items():
        shown = f"  {name.split('/')[0]} pid {name.split('/')[1]}" if "/" in name else name
        lines.append(
            f"{shown:<24}{row['cpuSec']:>8.2f}{row['pctOfCore']:>12.1f}%{row['sharePct']:>7.1f}%"
        )
    total = sum(row["cpuSec"] for name, row in step.cpu.items() if "/" not in name)
    cores = os.cpu_count() or 1
    lines.append(
        f"{'total':<24}{total:>8.2f}{100 * total / step.wall_sec:>12.1f}%  "
        f"({cores} cores = {100 * cores}%)"
    )
    machine = step.extra.get("machineBusyPct")
    if machine is not None:
        lines.append(f"{'machine (every process)':<24}{machine * cores:>20.1f}%  ({machine:.1f}% "
                     f"of its {cores} cores)")  # fmt: skip
    return "\n".join(lines)


def wait_idle(sandbox_url: str, max_sec: float = IDLE_WAIT_MAX_SEC) -> float | None:
    """Seconds until the sandbox has no request in flight or queued (None: not in time)."""
    started = time.monotonic()
    while time.monotonic() - started < max_sec:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{sandbox_url}/__health", timeout=2) as response:
                health = json.loads(response.read())
            if all(s.get("inUse", 0) == 0 and s.get("waiting", 0) == 0 for s in health.values()):
                return round(time.monotonic() - started, 2)
        time.sleep(0.1)
    return None


def commit_stats(sandbox_url: str) -> dict[str, Any] | None:
    """The sandbox's group-commit counters, or None when it has none (an older one)."""
    url = f"{sandbox_url}/__group-commit"
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=5) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
        return stats
    return None


def commit_delta(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The commits and writes between two :func:`commit_stats`, and writes per commit."""
    if before is None or after is None:
        return None
    writes = int(after["writes"]) - int(before["writes"])
    commits = int(after["commits"]) - int(before["commits"])
    return {
        "on": bool(after["groupCommit"]),
        "writes": writes,
        "commits": commits,
        "failedCommits": int(after["failedCommits"]) - int(before["failedCommits"]),
        "writesPerCommit": round(writes / commits, 2) if commits else None,
    }


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (other work shares the cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def count_docs(project: str, firestore_host: str, run_id: str) -> int | None:
    """Documents the run wrote to the sandbox's collections (an aggregation query)."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    client = firestore.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    total = 0
    try:
        for collection in LOAD_SANDBOX_COLLECTIONS:
            query = client.collection(collection).where(
                filter=FieldFilter("loadRunId", "==", run_id)
            )
            result: Any = query.count().get(timeout=60)  # type: ignore[call-arg]
            total += int(result[0][0].value)
    except Exception as exc:  # a count is evidence, not the bench: report and go on
        print(f"bench-stack: could not count the documents of {run_id}: {exc}", file=sys.stderr)
        return None
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return total


def emulator_writes_per_sec(
    project: str, firestore_host: str, seconds: float = 5.0, concurrency: int = 64
) -> float:
    """Single-document writes per second the emulator takes from one async client with
    ``concurrency`` writes in flight (the ceiling of any Firestore-bound endpoint here)."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    async def probe() -> int:
        client = firestore.AsyncClient(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        collection = client.collection("bench_stack_emulator_probe")
        done = 0
        until = time.monotonic() + seconds

        async def writer(k: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < until:
                await collection.document(f"w{k}-{i}").set({"k": k, "i": i})
                i += 1
                done += 1

        try:
            await asyncio.gather(*(writer(k) for k in range(concurrency)))
        finally:
            client.close()  # type: ignore[no-untyped-call]
        return done

    started = time.monotonic()
    done = asyncio.run(probe())
    return round(done / (time.monotonic() - started), 1)
