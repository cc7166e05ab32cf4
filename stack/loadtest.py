"""A load-test scenario run from this machine, in worker processes (the command:
:mod:`stack.cli.loadtest`, ``pack391 loadtest SCENARIO``).

Each worker runs one shard (the same engine as ``pack391_executeLoadTest``) and sends
its per-second histograms back over a queue; this process merges them exactly and shows
live progress (:func:`run_local`).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from functions.load.engine import Progress, ShardRunner
from functions.load.results import (
    Seconds,
    crash_map,
    heatmap,
    merge,
    seconds_from_json,
    seconds_to_json,
    summarize,
    timeline,
)
from functions.load.scenarios import Plan
from shared.models.slo import SliMinuteDoc
from stack.constants import LOAD_TEST_ABORT_WITHIN_SEC, LOAD_TEST_PROGRESS_EVERY_SEC


def _worker(
    run_id: str, plan_json: dict[str, Any], shard: int, start_at: float, out: Any, stop: Any
) -> None:
    plan = Plan.from_json(plan_json)

    def sink(seconds: Seconds, progress: Progress) -> None:
        out.put(("slice", shard, seconds_to_json(seconds), vars(progress).copy()))

    last = [0.0]

    def tick(progress: Progress) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            out.put(("progress", shard, None, vars(progress).copy()))

    def check() -> str | None:
        return "stopped from the command line" if stop.is_set() else None

    runner = ShardRunner(run_id, plan, shard, abort_check=check, sink=sink, on_tick=tick)
    outcome, rest = runner.run(start_at)
    out.put(("slice", shard, seconds_to_json(rest), vars(outcome.progress).copy()))
    done = {
        "status": outcome.status,
        "reason": outcome.abort_reason,
        "elapsedSec": outcome.elapsed_sec,
    }
    out.put(("done", shard, done, vars(outcome.progress).copy()))


def _read_minutes(start: float, end: float, out: Any) -> None:
    from datetime import UTC, datetime

    from google.auth.exceptions import DefaultCredentialsError

    from functions.load.store import SliMinuteReader
    from shared.firestore import get_db

    try:
        docs = SliMinuteReader(get_db()).minutes(
            datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        )
        out.send(("ok", [doc.model_dump(mode="json", by_alias=True) for doc in docs]))
    except DefaultCredentialsError:
        out.send(("error", NO_FIRESTORE))
    except Exception as exc:  # the parent prints it: the command's one error line
        out.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


NO_FIRESTORE = (
    "no Firestore to read: give --firestore HOST:PORT (the local stack's emulator, printed by"
    " `make run` as 'Firestore emulator'), or set up Application Default Credentials for the"
    " project (gcloud auth application-default login)"
)
"""What ``--from-metrics`` says when neither an emulator nor Google credentials are there."""


def read_minutes(start: float, end: float, timeout_sec: float = 120.0) -> list[SliMinuteDoc]:
    """The recorded minutes of ``[start, end)`` (epoch seconds) from Firestore (the
    emulator when ``FIRESTORE_EMULATOR_HOST`` is set), read in a forked child: this
    process forks the load workers next and must not have opened a gRPC channel."""
    ctx = mp.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_read_minutes, args=(start, end, theirs))
    child.start()
    theirs.close()
    try:
        if not mine.poll(timeout_sec):
            raise RuntimeError(f"no answer from Firestore within {timeout_sec:g} s")
        status, payload = mine.recv()
    except EOFError:
        raise RuntimeError("the process reading the recorded minutes died") from None
    finally:
        child.join(5)
    if status != "ok":
        raise RuntimeError(f"reading the recorded minutes failed: {payload}")
    return [SliMinuteDoc.model_validate(raw) for raw in payload]


def _line(plan: Plan, progress: dict[int, dict[str, Any]]) -> str:
    rows = list(progress.values())
    elapsed = max((r["elapsed_sec"] for r in rows), default=0.0)
    sent = sum(r["sent"] for r in rows)
    rate = sent / elapsed if elapsed > 0 else 0.0
    wanted = sum(r["scheduled"] for r in rows) / elapsed if elapsed > 0 else 0.0
    p95 = max((r["recent_p95_ms"] for r in rows), default=0.0)
    return (
        f"{elapsed:6.1f}/{plan.duration_sec}s  sent {rate:8.1f}/s of {wanted:8.1f}/s scheduled  "
        f"p95(last s) {p95:8.1f} ms  errors {sum(r['errors'] for r in rows):6d}  "
        f"shed {sum(r.get('shed', 0) for r in rows):6d}  "
        f"dropped {sum(r['dropped'] for r in rows):6d}  in flight "
        f"{sum(r['in_flight'] for r in rows):5d}"
    )


class ProgressPrinter:
    """Live progress on ``stream``: on a terminal one line rewritten in place (``\\r``)
    at every update; otherwise (a pipe, a CI log, a file) a whole line at most every
    ``every_sec``, so the log gets readable lines instead of one endless one."""

    def __init__(
        self,
        stream: IO[str],
        every_sec: float = LOAD_TEST_PROGRESS_EVERY_SEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every_sec = every_sec
        self.clock = clock
        self.tty = stream.isatty()
        self._last: float | None = None
        self._pending: str | None = None

    def show(self, text: str) -> None:
        if self.tty:
            print(f"\r{text}", end="", file=self.stream, flush=True)
            self._pending = text
            return
        now = self.clock()
        if self._last is None or now - self._last >= self.every_sec:
            print(text, file=self.stream, flush=True)
            self._last, self._pending = now, None
        else:
            self._pending = text

    def end(self) -> None:
        """Ends the live line (terminal) or prints the last state not yet shown (log)."""
        if self.tty:
            print(file=self.stream, flush=True)
        elif self._pending is not None:
            print(self._pending, file=self.stream, flush=True)
        self._pending = None


def run_local(
    plan: Plan,
    run_id: str,
    quiet: bool = True,
    progress_every_sec: float = LOAD_TEST_PROGRESS_EVERY_SEC,
) -> dict[str, Any]:
    """Run ``plan`` in ``plan.shards`` worker processes; the merged results. Unless
    ``quiet``, progress goes to stderr (see :class:`ProgressPrinter`)."""
    # fork, not spawn: a spawned worker re-imports this CLI (about 0.7 CPU-s each, the
    # largest share of a 30 s run's CPU). Safe here: the parent has opened no gRPC
    # channel, started no thread and runs no event loop when it forks (each worker makes
    # its own loop and connections).
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    stop = ctx.Event()
    start_at = time.time() + 1.5
    workers = [
        ctx.Process(target=_worker, args=(run_id, plan.to_json(), k, start_at, out, stop))
        for k in range(plan.shards)
    ]
    for w in workers:
        w.start()
    printer = ProgressPrinter(sys.stderr, progress_every_sec)
    parts: list[Seconds] = []
    progress: dict[int, dict[str, Any]] = {}
    outcomes: dict[int, dict[str, Any]] = {}
    try:
        while len(outcomes) < plan.shards:
            try:
                kind, shard, payload, prog = out.get(timeout=0.5)
            except queue.Empty:
                if not any(w.is_alive() for w in workers) and out.empty():
                    raise RuntimeError("a load worker died without reporting") from None
                continue
            progress[shard] = prog
            if kind == "slice" and payload:
                parts.append(seconds_from_json(payload))
            elif kind == "done":
                outcomes[shard] = payload
            if not quiet:
                printer.show(_line(plan, progress))
    except KeyboardInterrupt:
        stop.set()
        print("\nstopping every worker...", file=sys.stderr)
        while len(outcomes) < plan.shards:
            kind, shard, payload, prog = out.get(timeout=LOAD_TEST_ABORT_WITHIN_SEC + 5)
            if kind == "slice" and payload:
                parts.append(seconds_from_json(payload))
            elif kind == "done":
                outcomes[shard] = payload
    finally:
        for w in workers:
            w.join(10)
    if not quiet:
        printer.end()
    seconds = merge(parts)
    elapsed = max(o["elapsedSec"] for o in outcomes.values())
    aborted = [o["reason"] for o in outcomes.values() if o["status"] == "aborted"]
    return {
        "runId": run_id,
        "status": "aborted" if aborted else "completed",
        "abortReason": aborted[0] if aborted else None,
        "plan": plan.to_json(),
        "summary": summarize(seconds, plan.thresholds, elapsed, plan.rps),
        "timeline": timeline(seconds),
        "heatmap": heatmap(seconds),
        "crashMap": crash_map(seconds),
        "failoverLog": [],
    }
