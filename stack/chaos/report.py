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
        lines += _answer_lines(s)
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
    lines += longest_summary(report)
    verdict = "every invariant held" if report["held"] else f"{len(report['broken'])} broken"
    lines.append(f"chaos run {report['runId']}: {verdict}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _answer_lines(scenario: dict[str, Any]) -> list[str]:
    """Each function's longest answer: over the scenario, and of the calls started while
    the fault was on, against its budget."""
    answers: dict[str, dict[str, Any]] = scenario.get("answerTimes", {})
    if not answers:
        return []
    lines = [f"   {'function':<32} {'budget':>7} {'calls':>5} {'longest':>9} {'during':>9}"]
    for fn, row in answers.items():
        budget = "-" if row["budgetSec"] is None else f"{row['budgetSec']:g}s"
        during = "-" if row["maxMsDuring"] is None else f"{row['maxMsDuring']:.0f}ms"
        lines.append(
            f"   {fn:<32} {budget:>7} {row['calls']:>5} {row['maxMs']:>7.0f}ms {during:>9}"
        )
    return lines


def longest_summary(report: dict[str, Any]) -> list[str]:
    """One line per fault: the longest answer of a call started while it was on."""
    lines = ["longest answer while each fault was on (budget + slack is the invariant):"]
    for s in report["faults"]:
        longest = s.get("longestDuring")
        if longest is None:
            lines.append(f"   {s['fault']:<16} no call of a function started during it")
            continue
        budget = longest.get("budgetSec")
        of = "" if budget is None else f" of a {budget:g}s budget"
        lines.append(f"   {s['fault']:<16} {longest['function']} {longest['ms'] / 1000:.2f}s{of}")
    return lines
