"""The chaos run's report as readable text."""

from __future__ import annotations

import json
from typing import Any


def render_table(report: dict[str, Any]) -> str:
    """The report as readable text."""
    lines: list[str] = []
    for s in report["faults"]:
        w = s["window"]
        lines.append(
            f"== {s['fault']}  ({w['durationSec']:.1f}s; market {s['country']} limit "
            f"{s['trafficLimit']}; rate-limit recovery "
            f"{_fmt(s['recoverySec'])}s, stack recovery {_fmt(s['stackRecoverySec'])}s; "
            f"swipe {s['swipe']['sent']}/{s['swipe']['scheduled']} sent, "
            f"{s['swipe']['dropped']} dropped, p99 during {s['swipe']['p99MsDuring']} ms; "
            f"checkRateLimit p99 during {s['rateLimitP99MsDuring']} ms)"
        )
        lines.append(f"   {'phase':<7} {'op':<10} outcomes")
        for phase in ("before", "during", "after"):
            for op, counts in s["outcomes"].get(phase, {}).items():
                text = "  ".join(f"{k}={v}" for k, v in counts.items())
                lines.append(f"   {phase:<7} {op:<10} {text}")
        for inv in s["invariants"]:
            mark = "held  " if inv["held"] else "BROKEN"
            lines.append(f"   {mark} {inv['invariant']}: {inv['detail']}")
            if not inv["held"] and inv["counterexample"] is not None:
                example = json.dumps(inv["counterexample"], default=str)
                lines.append(f"          first counterexample: {example}")
    verdict = "every invariant held" if report["held"] else f"{len(report['broken'])} broken"
    lines.append(f"chaos run {report['runId']}: {verdict}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
