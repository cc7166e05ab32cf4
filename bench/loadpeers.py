"""Shared by the load benchmarks: a target in its own process, and the three generators
(this engine, Locust, wrk) run against it the same way."""

from __future__ import annotations

import csv
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from functions.load.scenarios import build_plan
from functions.load.service import new_run_id
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
        started = time.monotonic()
        subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=duration + 120)
        wall = time.monotonic() - started
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
        "p99Ms": float(agg["99%"]),
        "wallSec": round(wall, 1),
        "held": abs(achieved - rps) <= 0.01 * rps,
    }


def wrk(url: str, duration: int, threads: int = 2, connections: int = 64) -> dict[str, Any]:
    """wrk's closed-loop ceiling (as fast as the target answers)."""
    binary = shutil.which("wrk")
    if binary is None:
        return {"tool": "wrk", "error": "wrk is not installed: apt-get install -y wrk"}
    out = subprocess.run(
        [binary, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url + "/swipe"],
        capture_output=True, text=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "tool": "wrk",
        "achievedRps": float(found.group(1)) if found else None,
        "p99Ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "threads": threads,
        "connections": connections,
    }
