"""The rehearsal's load: the load engine (:class:`functions.load.engine.ShardRunner`, the
same open-model engine as ``pack391 loadtest``) in worker processes forked before the
rehearsal opens any thread or channel, each running the phases it is sent, and handing
back per-second results stamped with wall-clock seconds.

A phase is one constant-rate plan of a scenario's mix (:func:`constant_plan`); the
results of each stream (``load``, ``chat``) are merged per second and turned into
timeline series by :func:`series_of`.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from functions.load.results import Seconds, SecondStats, latency_of, seconds_from_json
from functions.load.scenarios import Plan, Shape, build_plan

SHED_KIND = "http_503"
"""A request the sandbox shed (503 with Retry-After): counted apart from errors."""


def constant_plan(scenario: str, target: str, rps: float, duration_sec: int) -> Plan:
    """``scenario``'s mix at a constant ``rps`` for ``duration_sec`` (one shard)."""
    plan = build_plan(scenario, target, rps=rps, duration_sec=duration_sec, shards=1)
    return replace(plan, shape=Shape.CONSTANT)


def _worker(jobs: Any, out: Any) -> None:
    from functions.load.engine import ShardRunner
    from functions.load.results import seconds_to_json

    while True:
        job = jobs.get()
        if job is None:
            return
        stream, run_id, plan_json, start_at = job
        plan = Plan.from_json(plan_json)

        def sink(
            seconds: Seconds, _progress: Any, stream: str = stream, start_at: float = start_at
        ) -> None:
            out.put((stream, start_at, seconds_to_json(seconds)))

        runner = ShardRunner(run_id, plan, 0, sink=sink)
        _, rest = runner.run(start_at)
        out.put((stream, start_at, seconds_to_json(rest)))
        out.put(("done", run_id, None))


class LoadPool:
    """Worker processes running load phases; the merged results per stream."""

    def __init__(self, workers: int = 2) -> None:
        # fork: the workers must exist before this process starts a thread or a gRPC
        # channel (the caller makes the pool first)
        ctx = mp.get_context("fork")
        self._jobs = ctx.Queue()
        self._out = ctx.Queue()
        self._procs = [
            ctx.Process(target=_worker, args=(self._jobs, self._out), daemon=True)
            for _ in range(workers)
        ]
        for p in self._procs:
            p.start()
        self.seconds: dict[str, dict[int, SecondStats]] = defaultdict(dict)
        """stream -> unix second -> that second's results."""
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def run(self, stream: str, run_id: str, plan: Plan, start_at: float | None = None) -> float:
        """Start ``plan`` (at ``start_at``, default in 1 s); answers its start time."""
        begin = start_at if start_at is not None else time.time() + 1.0
        self._jobs.put((stream, run_id, plan.to_json(), begin))
        return begin

    def wait(self, run_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if run_id in self._done:
                    return True
            time.sleep(0.2)
        return False

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                stream, key, payload = self._out.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                if stream == "done":
                    self._done.add(str(key))
                    continue
                for sec, stats in seconds_from_json(payload).items():
                    at = int(float(key) + sec)
                    mine = self.seconds[stream].setdefault(at, SecondStats())
                    mine.add(stats)

    def snapshot(self) -> dict[str, dict[int, SecondStats]]:
        with self._lock:
            return {k: dict(v) for k, v in self.seconds.items()}

    def close(self) -> None:
        for _ in self._procs:
            self._jobs.put(None)
        for p in self._procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
        self._stop.set()
        self._reader.join(2)


def series_of(stream: str, seconds: dict[int, SecondStats]) -> dict[str, list[tuple[float, float]]]:
    """Per-second series of one stream: offered (scheduled) and achieved (sent) rates,
    p95, errors (shed excluded), shed and dropped starts."""
    out: dict[str, list[tuple[float, float]]] = {
        f"{stream}.{name}": []
        for name in ("offered_rps", "achieved_rps", "p95_ms", "errors", "shed", "dropped")
    }
    for at in sorted(seconds):
        s = seconds[at]
        shed = sum(n for key, n in s.errors.items() if key.endswith("|" + SHED_KIND))
        errors = sum(s.errors.values()) - shed
        t = float(at)
        out[f"{stream}.offered_rps"].append((t, float(s.scheduled)))
        out[f"{stream}.achieved_rps"].append((t, float(s.sent)))
        out[f"{stream}.p95_ms"].append((t, float(latency_of(s.total())["p95"]) if s.hist else 0.0))
        out[f"{stream}.errors"].append((t, float(errors)))
        out[f"{stream}.shed"].append((t, float(shed)))
        out[f"{stream}.dropped"].append((t, float(s.dropped)))
    return out
