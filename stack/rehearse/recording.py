"""What a rehearsal records: data only (no I/O), JSON in and out.

One time axis (unix seconds) for everything:

- ``series``: name -> ``[[t, value], ...]`` in time order. Names in use:
  ``load.offered_rps``, ``load.achieved_rps``, ``load.p95_ms``, ``load.errors``,
  ``load.shed``, ``load.dropped`` (per second, from the load engine);
  ``instances.<service>`` (the scaling registry's ``state.currentInstances``),
  ``applied.<service>`` (what the sandbox serves with, after its resize hook),
  ``util_pct.<service>`` (the sandbox's slots in use, percent), ``isolated.<service>``
  (1 open, 0.5 half-open, 0 none), ``canary.<label>`` (the deployment's
  ``appliedPercent``), ``ddos.mode`` (0/1), ``alerts.open`` (open alerts),
  ``attack.rps`` (the scripted attack's offered rate), ``slo.deploy_freeze`` (1
  enforced, 0.5 wanted but lifted, 0 none).
- ``acts``: what the script did and when (``name``, ``startedAt``, ``endedAt``,
  ``detail``).
- ``docs``: the evidence read back from the stack (documents, answers), keyed by what
  they are (``scalingDecisions``, ``scalingAlerts``, ``deployments``, ``detections``,
  ``alerts``, ``gates``, ``rateLimits``, ``bruteForce``, ``history``, ``market``,
  ``backup``, ``drill``, ``budgets``); times in them are unix seconds too.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]


@dataclass
class Act:
    name: str
    started_at: float
    ended_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "detail": self.detail,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Act:
        return Act(raw["name"], float(raw["startedAt"]), raw.get("endedAt"), raw.get("detail", {}))


@dataclass
class Recording:
    started_at: float
    ended_at: float
    series: dict[str, list[Point]] = field(default_factory=dict)
    acts: list[Act] = field(default_factory=list)
    docs: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ reading

    def act(self, name: str) -> Act | None:
        """The first act of that name."""
        return next((a for a in self.acts if a.name == name), None)

    def points(
        self, name: str, since: float | None = None, until: float | None = None
    ) -> list[Point]:
        pts = self.series.get(name, [])
        return [
            (t, v)
            for t, v in pts
            if (since is None or t >= since) and (until is None or t <= until)
        ]

    def value_at(self, name: str, at: float) -> float | None:
        """The last sampled value at or before ``at``."""
        pts = self.series.get(name, [])
        i = bisect.bisect_right([t for t, _ in pts], at)
        return pts[i - 1][1] if i else None

    # ------------------------------------------------------------ writing

    def add(self, name: str, at: float, value: float) -> None:
        self.series.setdefault(name, []).append((at, value))

    def extend(self, name: str, points: Iterable[Point]) -> None:
        merged = self.series.setdefault(name, [])
        merged.extend(points)
        merged.sort(key=lambda p: p[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "series": {k: [[t, v] for t, v in pts] for k, pts in sorted(self.series.items())},
            "acts": [a.to_json() for a in self.acts],
            "docs": self.docs,
        }

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Recording:
        return Recording(
            started_at=float(raw["startedAt"]),
            ended_at=float(raw["endedAt"]),
            series={k: [(float(t), float(v)) for t, v in pts] for k, pts in raw["series"].items()},
            acts=[Act.from_json(a) for a in raw.get("acts", [])],
            docs=dict(raw.get("docs", {})),
        )
