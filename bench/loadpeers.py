"""Shared by the load benchmarks: a target in its own process, and the three generators
(this engine, Locust, wrk) run against it the same way."""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from functions.load.scenarios import build_plan, new_run_id
from shared.clock import utc_now
from stack.loadtest import run_local

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def target(kind: str, *extra: str) -> Iterator[str]:
    """``python -m bench.targets KIND`` in its own process; its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.targets", kind, "--port", str(port), *extra], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"target {kind} did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + sys) so far of ``root`` and each of its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent_of: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parent_of.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: cpu[pid] for pid in tree if pid in cpu}


def run_measured(
    argv: list[str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``argv`` to the end; its output, wall seconds and the CPU seconds (user + sys)
    of its whole process tree: ``getrusage(RUSAGE_CHILDREN)`` counts every process of it
    that was waited for (as GNU time does); /proc, sampled every 0.2 s, also sees one its
    parent never waited for (the larger of the two is reported)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    seen: dict[int, float] = {}
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(proc.communicate(timeout=timeout)[0]))
        reader.start()
        while reader.is_alive():
            seen |= _tree_cpu(proc.pid)
            reader.join(0.2)
        wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done = subprocess.CompletedProcess(argv, proc.returncode, out[0] if out else "", "")
    return done, wall, max(waited, sum(seen.values()))


def _cpu_fields(requests: int, cpu: float, wall: float) -> dict[str, Any]:
    return {
        "requests": requests,
        "cpuSec": round(cpu, 2),
        "requestsPerCpuSec": round(requests / cpu) if cpu > 0 else None,
        "wallSec": round(wall, 1),
    }


def engine_cli(url: str, rps: float, duration: int, workers: int) -> dict[str, Any]:
    """``pack391 loadtest live_calls`` as its own process tree (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        argv = [
            sys.executable, "-m", "stack.cli", "loadtest", "live_calls", "--target", url,
            "--rps", str(rps), "--duration", str(duration), "--workers", str(workers),
            "--timeout", "10", "--quiet", "--json", str(out),
        ]  # fmt: skip
        done, wall, cpu = run_measured(argv, duration + 120)
        if not out.exists():
            return {"tool": "pack391", "error": done.stderr[-2000:]}
        summary = json.loads(out.read_text())["summary"]
    return {
        "tool": "pack391",
        "targetRps": rps,
        "achievedRps": summary["achievedRps"],
        "dropped": summary["dropped"],
        "late": summary["late"],
        "errors": summary["errors"],
        "errorsByKind": summary["errorsByKind"],
        **{f"{k}Ms": v for k, v in summary["latencyMs"].items() if k != "avg"},
        **_cpu_fields(summary["requests"], cpu, wall),
    }


def engine(url: str, rps: float, duration: int, workers: int) -> dict[str, Any]:
    """This engine at a constant rate (the ``live_calls`` scenario's constant shape)."""
    plan = build_plan(
        "live_calls", url, rps=rps, duration_sec=duration, shards=workers, timeout_sec=10.0
    )
    summary: dict[str, Any] = run_local(plan, new_run_id(utc_now()))["summary"]
    return {
        "tool": "pack391",
        "targetRps": rps,
        "achievedRps": summary["achievedRps"],
        "droppedPct": summary["droppedPct"],
        "late": summary["late"],
        "errors": summary["errors"],
        "p50Ms": summary["latencyMs"]["p50"],
        "p99Ms": summary["latencyMs"]["p99"],
        "held": abs(summary["achievedRps"] - rps) <= 0.01 * rps and summary["droppedPct"] < 1.0,
    }


def locust(url: str, rps: float, duration: int, workers: int) -> dict[str, Any]:
    """Locust FastHttpUser, one request per second per user, ``rps`` users spawned in
    about a second; the achieved rate counts the whole run (as the engine's does)."""
    users = round(rps)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "locust")
        argv = [
            sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"),
            "--headless", "--host", url, "--users", str(users), "--spawn-rate", str(users),
            "--run-time", f"{duration}s", "--csv", prefix, "--only-summary",
            "--loglevel", "ERROR", "--stop-timeout", "5",
        ]  # fmt: skip
        if workers > 1:
            argv += ["--processes", str(workers)]
        _, wall, cpu = run_measured(argv, duration + 120)
        with open(prefix + "_stats.csv", newline="") as fh:
            rows = {r["Name"]: r for r in csv.DictReader(fh)}
    agg = rows["Aggregated"]
    count = int(agg["Request Count"])
    achieved = count / duration
    return {
        "tool": "locust",
        "targetRps": rps,
        "achievedRps": round(achieved, 2),
        "errors": int(agg["Failure Count"]),
        "p50Ms": float(agg["50%"]),
        "p95Ms": float(agg["95%"]),
        "p99Ms": float(agg["99%"]),
        "maxMs": float(agg["Max Response Time"]),
        "held": abs(achieved - rps) <= 0.01 * rps,
        **_cpu_fields(count, cpu, wall),
    }


def wrk(url: str, duration: int, threads: int = 2, connections: int = 64) -> dict[str, Any]:
    """wrk's closed-loop ceiling (as fast as the target answers)."""
    binary = shutil.which("wrk")
    if binary is None:
        return {"tool": "wrk", "error": "wrk is not installed: apt-get install -y wrk"}
    argv = [binary, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    argv.append(url + "/swipe")
    done, wall, cpu = run_measured(argv, duration + 60)
    out = done.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def pct(p: str) -> float | None:
        hit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        return round(float(hit.group(1)) * scale[hit.group(2)], 3) if hit else None

    return {
        "tool": "wrk",
        "achievedRps": float(found.group(1)) if found else None,
        "p50Ms": pct("50"),
        "p99Ms": pct("99"),
        "threads": threads,
        "connections": connections,
        **_cpu_fields(int(count.group(1)) if count else 0, cpu, wall),
    }
