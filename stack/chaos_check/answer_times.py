"""Answer time is an invariant: every call to a function of the bundle answers within that
function's budget (:mod:`shared.deadline`: what the edge gives the call before it answers
``UNAVAILABLE``), plus a stated slack, whatever fault is on.

Pure: the budgets come in as a table (function name -> seconds; the runner reads them
from the bundle with the stack's params, :mod:`stack.chaos.budgets`), the calls as the
recorded history. A call of no function of the bundle (the sandbox's app endpoints:
``function`` None) or of a function the table has no budget for is not checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stack.chaos_check.history import Call, Verdict, Window, by_start, verdict_held

ANSWER_SLACK_SEC = 1.0
"""What a recorded answer may take beyond its function's budget. The budget starts when
the function's body starts and ends when it raises; the recorder's clock also covers the
HTTP hop both ways, the functions server's queue before the body (a thread per request),
reading the token, the rate-limit check and writing the answer: milliseconds on an idle
box, but the chaos run shares two cores with the Firestore emulator's JVM, Redis, the
sandbox's 100 RPS and the generator, where the measured hop reaches a few hundred ms
under a stall (docs/chaos.md, the figures). 1 s is that with room, and still a third of
the shortest budget (3 s): a call that waits for a stalled dependency past its budget
overshoots by the stall (seconds), not by a hop."""


@dataclass(frozen=True)
class Violation:
    """A call that took longer than its function's budget plus the slack."""

    call: Call
    budget_sec: float
    took_sec: float

    def to_json(self) -> dict[str, Any]:
        return self.call.brief() | {
            "budgetSec": self.budget_sec,
            "tookSec": round(self.took_sec, 3),
        }


def budget_of(call: Call, budgets: Mapping[str, float]) -> float | None:
    """The budget of the function ``call`` called (None: not a function with a budget)."""
    return budgets.get(call.function) if call.function is not None else None


def budget_violations(
    history: Iterable[Call], budgets: Mapping[str, float], slack_sec: float = ANSWER_SLACK_SEC
) -> list[Violation]:
    """Every call that took longer than its function's budget + ``slack_sec``, in order of
    start (a call with no answer, a client timeout, counts for the time it was waited for)."""
    found = []
    for call in by_start(history):
        budget = budget_of(call, budgets)
        took = call.t_end - call.t_start
        if budget is not None and took > budget + slack_sec:
            found.append(Violation(call, budget, took))
    return found


def within_budget(
    history: Iterable[Call], budgets: Mapping[str, float], slack_sec: float = ANSWER_SLACK_SEC
) -> Verdict:
    """Every call of a function with a budget answered within budget + ``slack_sec``;
    the first counterexample (the earliest call over) when not."""
    calls = list(history)
    name = f"every call answered within its function's budget + {slack_sec:g}s"
    violations = budget_violations(calls, budgets, slack_sec)
    if violations:
        first = violations[0]
        return Verdict(
            name,
            False,
            f"{len(violations)} call(s) over; the first, {first.call.function}, took "
            f"{first.took_sec:.2f}s of a {first.budget_sec:g}s budget",
            first.to_json(),
        )
    checked = [c for c in calls if budget_of(c, budgets) is not None]
    if not checked:
        return verdict_held(name, "no call of a function with a budget")
    closest = max(checked, key=lambda c: (c.t_end - c.t_start) / (budget_of(c, budgets) or 1))
    took = closest.t_end - closest.t_start
    return verdict_held(
        name,
        f"{len(checked)} calls; the closest, {closest.function}, took {took:.2f}s of "
        f"{budget_of(closest, budgets):g}s",
    )


def longest_answers(
    history: Iterable[Call], window: Window, budgets: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """Per function called (sorted by name): its budget (None: none known), how many
    calls, the longest answer in ms over the scenario and over the calls started while
    the fault was on (None: none started then)."""
    table: dict[str, dict[str, Any]] = {}
    for call in history:
        if call.function is None:
            continue
        row = table.setdefault(
            call.function,
            {"budgetSec": budgets.get(call.function), "calls": 0, "maxMs": 0.0,
             "maxMsDuring": None},
        )  # fmt: skip
        row["calls"] += 1
        ms = round(call.latency_ms, 1)
        row["maxMs"] = max(row["maxMs"], ms)
        if window.phase(call) == "during":
            row["maxMsDuring"] = max(row["maxMsDuring"] or 0.0, ms)
    return dict(sorted(table.items()))


def longest_during(answers: Mapping[str, Mapping[str, Any]]) -> tuple[str, float] | None:
    """The function with the longest answer started during the fault, and that answer
    (ms), from :func:`longest_answers`' table; None when no call started during it."""
    during = [(fn, float(row["maxMsDuring"])) for fn, row in answers.items()
              if row.get("maxMsDuring") is not None]  # fmt: skip
    return max(during, key=lambda item: item[1]) if during else None
