"""``pack391 rehearse``'s rehearsal (the command: :mod:`stack.cli.rehearse`): play launch
day on the local stack, judge every claim of the spec, write a JSON and an HTML report
(:func:`rehearse`); ``--short``'s settings (:data:`SHORT_DEFAULTS`, :func:`settings_for`)
and the table the command prints (:func:`table`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stack.rehearse.claims import ClaimResult, judge
from stack.rehearse.recording import Recording

SHORT_DEFAULTS: dict[str, Any] = {
    "service_latency_ms": 400.0,
    "hold_rps": 30.0,
    "push_rps": 55.0,
    "hold_sec": 5.0,
    "push_second": 16.0,
    "push_window_sec": 6.0,
    "push_past_minute_sec": 8.0,
}
"""``--short``: a shorter hold at half the slots, ending at seconds 16-22 of a minute (the
push's), and a push that lasts 8 s into the next minute, past the guard's run at the end
of its first: a scale-up applied later would fail the 60 s claim anyway. The guard judges
the minute's mean utilisation: a push begun at second 22 still clears the target's band,
(22 x 50 % + 38 x 92 %) / 60 = 77 % against 65 % x 1.1 = 71.5 %; a push begun at second 16
leaves the guard 16 s after the minute's end to apply the scale-up (``make test`` runs it
beside the other tests: the guard's run takes seconds on a loaded box). One continuous
phase: a pause in the load shows as an idle service in the metrics the guard judges.
Each request holds its slot 400 ms, at half the rates (the slots fill at 60 RPS: the same
50 % and 92 % of them), so a few milliseconds of delay on a busy box take half as much
of a slot, and the load costs half the CPU."""


def settings_for(claims: list[str], short: bool, **overrides: Any) -> Any:
    from stack.rehearse.script import Settings

    return Settings(tuple(claims), short, **{**(SHORT_DEFAULTS if short else {}), **overrides})


def rehearse(handle: Any, settings: Any, pool: Any, out: Path) -> dict[str, Any]:
    """Play, judge, write the reports; the JSON report."""
    from stack.rehearse import report
    from stack.rehearse.script import Rehearsal

    began = time.time()
    rec = Recording(began, began)
    rehearsal = Rehearsal(handle, settings, pool, rec)
    rehearsal.play()
    results = judge(rec, settings.claims)
    meta = {
        "wallSec": round(time.time() - began, 1),
        "settings": asdict(settings),
        "trackErrors": rehearsal.errors,
        "runId": rehearsal.run_id,
    }
    doc = report.to_json(rec, results, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rehearsal.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "rehearsal.html").write_text(report.to_html(rec, results, meta))
    return doc


def table(results: list[ClaimResult]) -> str:
    lines = []
    for r in results:
        figure = "-" if r.figure is None else f"{r.figure:g} {r.unit}"
        lines.append(f"{'pass' if r.passed else 'FAIL':4}  {r.claim:<17} {figure:<22} {r.why}")
    return "\n".join(lines)
