"""``pack391 rehearse``: play launch day on the local stack, judge every claim of the spec,
write a JSON and an HTML report; exit 1 when a claim fails (2 when the rehearsal could not
run).

    pack391 rehearse                          against the running `make run` stack
    pack391 rehearse --serve                  on a stack of its own (free ports)
    pack391 rehearse --claims scale_up,rate_limits,brute_force --short

Reports: ``DIR/rehearsal.json`` and ``DIR/rehearsal.html`` (``--out``, default
``.local/rehearse``). The full run takes about 16 minutes, ``--short`` about 3.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stack.rehearse.claims import CLAIMS, ClaimResult, judge
from stack.rehearse.recording import Recording

SOURCE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_OUT = SOURCE_DIR / ".local" / "rehearse"

SHORT_DEFAULTS: dict[str, Any] = {
    "hold_sec": 5.0,
    "hold_rps": 60.0,
    "push_second": 8.0,
    "push_window_sec": 14.0,
    "push_past_minute_sec": 8.0,
}
"""``--short``: a shorter hold at half the slots, ending at seconds 8-22 of a minute (the
push's), and a push that lasts 8 s into the next minute, past the guard's run at the end
of its first: a scale-up applied later would fail the 60 s claim anyway. The guard judges
the minute's mean utilisation: a push begun at second 22 still clears the target's band,
(22 x 50 % + 38 x 92 %) / 60 = 77 % against 65 % x 1.1 = 71.5 %; a push begun at second 8
leaves the guard 8 s after the minute's end. One continuous phase: a pause in the load
shows as an idle service in the metrics the guard judges."""


def settings_for(claims: list[str], short: bool, **overrides: Any) -> Any:
    from stack.rehearse.script import Settings

    return Settings(tuple(claims), short, **{**(SHORT_DEFAULTS if short else {}), **overrides})


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "rehearse",
        help="play launch day on the local stack and judge every claim (exit 1 if one fails)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report directory")
    p.add_argument(
        "--claims",
        default=",".join(CLAIMS),
        help=f"comma-separated, of: {', '.join(CLAIMS)} (default: all)",
    )
    p.add_argument("--short", action="store_true", help="shorter acts (make test)")
    p.add_argument(
        "--serve",
        action="store_true",
        help="start a `pack391 serve` of its own on free ports (default: the running stack)",
    )
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    from stack.faults import FaultError, StackHandle
    from stack.platform.harness import serve_stack
    from stack.rehearse.load import LoadPool

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    names = [n.strip() for n in str(args.claims).split(",") if n.strip()]
    unknown = [n for n in names if n not in CLAIMS]
    if unknown or not names:
        print(
            f"pack391 rehearse: unknown claim(s) {unknown}: of {', '.join(CLAIMS)}", file=sys.stderr
        )
        return 2
    settings = settings_for(names, args.short)
    pool = LoadPool()  # before any thread or channel: its workers are forked
    try:
        if args.serve:
            with serve_stack(args.out / "logs", args.out / "stack.json") as handle:
                doc = rehearse(handle, settings, pool, args.out)
        else:
            doc = rehearse(StackHandle.load(), settings, pool, args.out)
    except (FileNotFoundError, RuntimeError, FaultError) as exc:
        print(f"pack391 rehearse: {exc}", file=sys.stderr)
        return 2
    finally:
        pool.close()
    results = [
        ClaimResult(**{k: c[k] for k in ClaimResult.__dataclass_fields__}) for c in doc["claims"]
    ]
    print(table(results))
    print(
        f"wall time {doc['meta']['wallSec'] / 60:.1f} min; reports: {args.out / 'rehearsal.html'}"
    )
    if doc["meta"]["trackErrors"]:
        print("acts that failed: " + "; ".join(doc["meta"]["trackErrors"]), file=sys.stderr)
    return 0 if doc["passed"] else 1
