"""``pack391 rehearse``: play launch day on the local stack, judge every claim of the spec,
write a JSON and an HTML report; exit 1 when a claim fails (2 when the rehearsal could not
run).

    pack391 rehearse                          against the running `make run` stack
    pack391 rehearse --serve                  on a stack of its own (free ports)
    pack391 rehearse --claims scale_up,rate_limits,brute_force --short

Reports: ``DIR/rehearsal.json`` and ``DIR/rehearsal.html`` (``--out``, default
``.local/rehearse``). The full run takes about 18 minutes, ``--short`` about 3.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from stack.rehearse.claims import CLAIMS, ClaimResult

SOURCE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_OUT = SOURCE_DIR / ".local" / "rehearse"


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


def run(args: argparse.Namespace) -> int:
    from stack.platform.handle import StackHandle
    from stack.platform.harness import serve_stack
    from stack.rehearse.cli import rehearse, settings_for, table
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
    except (FileNotFoundError, RuntimeError) as exc:  # a StackError too
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
