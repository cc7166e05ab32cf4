"""Service-level objectives (:mod:`functions.slo`): the objectives' defaults, the
multi-window, multi-burn-rate alerts of Google's SRE workbook ("Alerting on SLOs",
table 5-8), and what a burning budget does.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "SLO_ACTIONS_TTL_SEC",
    "SLO_AVAILABILITY_PCT",
    "SLO_BUDGET_WINDOW_DAYS",
    "SLO_LATENCY_GOOD_PCT",
    "SLO_LATENCY_MS",
    "SLO_LONG_WINDOW_MIN_EVENTS",
    "SLO_MINUTES_RETENTION_DAYS",
    "SLO_PAGE_BURN_RATE",
    "SLO_PAGE_LONG_MIN",
    "SLO_PAGE_SHORT_MIN",
    "SLO_RECENT_MINUTES_TTL_SEC",
    "SLO_RECORDER_FLUSH_SEC",
    "SLO_SERVICE_DECISIONS_READ_MAX",
    "SLO_SHED_MAX_CLASSES",
    "SLO_SHED_ORDER",
    "SLO_SHED_RETRY_SEC",
    "SLO_SHORT_WINDOW_MIN_EVENTS",
    "SLO_TICKET_BURN_RATE",
    "SLO_TICKET_LONG_MIN",
    "SLO_TICKET_SHORT_MIN",
]

SLO_AVAILABILITY_PCT: Final[float] = 99.0
"""Default availability objective, percent of requests not failed by the system over the
budget window: the spec's load-test error-rate limit (1 %) as a standing objective."""

SLO_LATENCY_MS: Final[float] = 400.0
"""Default latency objective's bound: the spec's p95 target (400 ms)."""

SLO_LATENCY_GOOD_PCT: Final[float] = 95.0
"""Default latency objective: percent of requests answered within :data:`SLO_LATENCY_MS`
(the spec's target is a p95)."""

SLO_BUDGET_WINDOW_DAYS: Final[int] = 30
"""The error budget's window: 30 days, rolling (daily buckets)."""

SLO_PAGE_BURN_RATE: Final[float] = 14.4
"""Page when both the long and the short window burn at least this fast (2 % of a
30-day budget in one hour)."""

SLO_PAGE_LONG_MIN: Final[int] = 60
"""The page's long window, in minutes."""

SLO_PAGE_SHORT_MIN: Final[int] = 5
"""The page's short window, in minutes (the alert resets quickly once the burn stops)."""

SLO_TICKET_BURN_RATE: Final[float] = 6.0
"""Open a ticket when both windows burn at least this fast (5 % of the budget in 6 h)."""

SLO_TICKET_LONG_MIN: Final[int] = 6 * 60
"""The ticket's long window, in minutes."""

SLO_TICKET_SHORT_MIN: Final[int] = 30
"""The ticket's short window, in minutes."""

SLO_LONG_WINDOW_MIN_EVENTS: Final[int] = 50
"""Requests a long window needs before its burn rate counts (a handful of requests at
night would otherwise page on one error)."""

SLO_SHORT_WINDOW_MIN_EVENTS: Final[int] = 10
"""Requests a short window needs before its burn rate counts."""

SLO_SHED_ORDER: Final[tuple[str, ...]] = ("ai", "swipe", "general", "wallet", "payment", "auth")
"""Endpoint classes in the order a page-level burn sheds them: lowest priority first,
payment and auth last. Staff and trusted services are never shed."""

SLO_SHED_MAX_CLASSES: Final[int] = 3
"""How far down :data:`SLO_SHED_ORDER` shedding goes (3: ai, swipe and general; payment
and auth are never shed by default). One more class each minute the page-level burn
lasts, one fewer each minute it has stopped."""

SLO_SHED_RETRY_SEC: Final[float] = 30.0
"""``retryAfterSec`` of a request refused by shedding (reason ``shed``): the evaluator
decides once a minute and sheds one class fewer each minute the burn has stopped, so a
client that comes back after half a minute finds the next decision, not the same one."""

SLO_RECORDER_FLUSH_SEC: Final[float] = 1.0
"""How often an instance adds its recorded calls to Redis (at most, on a call)."""

SLO_RECENT_MINUTES_TTL_SEC: Final[int] = 7 * 60 * 60
"""How long Redis keeps a minute's recorded calls: the longest burn window (6 h) and
an hour to spare."""

SLO_MINUTES_RETENTION_DAYS: Final[int] = 35
"""How long a complete minute stays in ``pack391_sli_minutes`` (TTL): the budget window
and five days for ``loadtest --from-metrics`` of last month's peak."""

SLO_ACTIONS_TTL_SEC: Final[int] = 180
"""The actions snapshot's TTL in Redis: an evaluator that stopped running for three
minutes leaves no action in force (fail open)."""

SLO_SERVICE_DECISIONS_READ_MAX: Final[int] = 500
"""Scale-guard decisions the evaluator reads for one minute's services (two runs of every
registered service, with room to spare)."""
