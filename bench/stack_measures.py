"""``make bench-stack``'s measurements around a step (:mod:`bench.stack` runs the steps).

Per step: each process's ``utime + stime`` from ``/proc/<pid>/stat`` (the generator: this
process and its reaped workers) as CPU-seconds and % of one core per component
(:func:`cpu_table`, :func:`render_table`); the seconds until the sandbox is idle again;
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


def sample_cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU-seconds so far of each component (``generator`` from :func:`generator_cpu_seconds`)."""
    sample = {"generator": generator_cpu_seconds()}
    for name, pid in pids.items():
        seconds = cpu_seconds(pid)
        if seconds is not None:
            sample[name] = seconds
    return sample


def cpu_table(
    before: Mapping[str, float], after: Mapping[str, float], wall_sec: float
) -> dict[str, dict[str, float]]:
    """Per component: CPU-seconds in the window, % of one core, share of all of it."""
    used = {name: max(0.0, after[name] - before[name]) for name in after if name in before}
    total = sum(used.values()) or 1.0
    return {
        name: {
            "cpuSec": round(sec, 2),
            "pctOfCore": round(100.0 * sec / wall_sec, 1) if wall_sec > 0 else 0.0,
            "sharePct": round(100.0 * sec / total, 1),
        }
        for name, sec in sorted(used.items(), key=lambda item: -item[1])
    }


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
             f"{'component':<20}{'CPU-s':>8}{'% of a core':>13}{'share':>8}"]  # fmt: skip
    for name, row in step.cpu.items():
        lines.append(
            f"{name:<20}{row['cpuSec']:>8.2f}{row['pctOfCore']:>12.1f}%{row['sharePct']:>7.1f}%"
        )
    total = sum(row["cpuSec"] for row in step.cpu.values())
    cores = os.cpu_count() or 1
    lines.append(
        f"{'total':<20}{total:>8.2f}{100 * total / step.wall_sec:>12.1f}%  "
        f"({cores} cores = {100 * cores}%)"
    )
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
