"""What every claim answers (:class:`ClaimResult`), and the helpers the claims share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    title: str
    passed: bool
    figure: float | None
    unit: str
    why: str
    """One line: what was measured, or why it failed and where to look."""
    evidence: str
    """Where the evidence is: ``series NAME``, ``act NAME``, ``doc COLLECTION/ID``."""
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "title": self.title,
            "passed": self.passed,
            "figure": self.figure,
            "unit": self.unit,
            "why": self.why,
            "evidence": self.evidence,
            "detail": self.detail,
        }


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def not_run(claim: str, title: str, act: str) -> ClaimResult:
    return ClaimResult(
        claim, title, False, None, "", f"act {act!r} did not run: nothing was measured",
        f"act {act}", {},
    )  # fmt: skip


def first_after(
    points: Sequence[tuple[float, float]], since: float, test: Callable[[float], bool]
) -> float | None:
    return next((at for at, v in points if at >= since and test(v)), None)
