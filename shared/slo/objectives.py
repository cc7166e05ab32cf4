"""Objectives: what each scope promises, pure.

A *scope* is what a budget is kept for: ``platform`` (every recorded call),
``class:NAME`` (an endpoint class), ``service:ID`` (a scaling service, from the scale
guard's per-minute metrics) or ``callable:NAME`` (one function or app endpoint; recorded
for ``loadtest --from-metrics``, judged only when given its own objective). Every scope
has an availability objective (percent of requests not failed by the system) and a latency
objective (percent of requests answered within a bound); defaults are the spec's targets
(:data:`~shared.thresholds.SLO_AVAILABILITY_PCT`, :data:`~shared.thresholds.SLO_LATENCY_MS`,
:data:`~shared.thresholds.SLO_LATENCY_GOOD_PCT`), changed per scope by
``PACK391_SLO_OBJECTIVES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared import thresholds as t

PLATFORM = "platform"
"""The scope of every recorded call together."""

_SCOPE = re.compile(r"^(platform|(class|service|callable):[A-Za-z0-9_.-]{1,100})$")


def class_scope(name: str) -> str:
    return f"class:{name}"


def service_scope(name: str) -> str:
    return f"service:{name}"


def callable_scope(name: str) -> str:
    return f"callable:{name}"


def is_scope(value: str) -> bool:
    return bool(_SCOPE.match(value))


@dataclass(frozen=True)
class Objective:
    availability_pct: float = t.SLO_AVAILABILITY_PCT
    latency_ms: float = t.SLO_LATENCY_MS
    latency_good_pct: float = t.SLO_LATENCY_GOOD_PCT

    @property
    def error_budget_ratio(self) -> float:
        """The share of requests that may fail (1 - availability)."""
        return 1 - self.availability_pct / 100

    @property
    def slow_budget_ratio(self) -> float:
        """The share of requests that may be slow."""
        return 1 - self.latency_good_pct / 100


DEFAULT = Objective()


class ObjectivesError(ValueError):
    """``PACK391_SLO_OBJECTIVES`` cannot be read: the message names the entry."""


def parse_objectives(raw: str) -> dict[str, Objective]:
    """``SCOPE=AVAIL/LATENCY_MS/GOOD_PCT;...`` -> scope -> objective. Strict: a wrong
    entry raises :class:`ObjectivesError` naming it (a deploy with a typo must not run on
    defaults it did not mean)."""
    out: dict[str, Objective] = {}
    for entry in (e.strip() for e in raw.split(";")):
        if not entry:
            continue
        scope, sep, values = entry.partition("=")
        scope = scope.strip()
        if not sep or not is_scope(scope):
            raise ObjectivesError(
                f"PACK391_SLO_OBJECTIVES: {entry!r}: want SCOPE=AVAIL/LATENCY_MS/GOOD_PCT, SCOPE "
                "platform, class:NAME, service:ID or callable:NAME"
            )
        parts = values.split("/")
        try:
            avail, latency, good = (float(p) for p in parts)
        except ValueError:
            raise ObjectivesError(
                f"PACK391_SLO_OBJECTIVES: {entry!r}: want three numbers AVAIL/LATENCY_MS/GOOD_PCT"
            ) from None
        if not (0 < avail < 100 and 0 < good < 100 and 0 < latency <= 600_000):
            raise ObjectivesError(
                f"PACK391_SLO_OBJECTIVES: {entry!r}: percentages must be between 0 and 100 "
                "(exclusive: 100 % leaves no budget), the latency 0 to 600000 ms"
            )
        if scope in out:
            raise ObjectivesError(f"PACK391_SLO_OBJECTIVES: {scope} given twice")
        out[scope] = Objective(avail, latency, good)
    return out


def objective_for(scope: str, overrides: Mapping[str, Objective]) -> Objective:
    """The scope's own objective, else the default."""
    return overrides.get(scope, DEFAULT)
