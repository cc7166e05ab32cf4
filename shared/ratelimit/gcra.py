"""GCRA, the generic cell rate algorithm (as in redis-cell), as a pure function.

``shared/lua/rate_slot.lua`` runs the same arithmetic atomically in Redis; this
module is the reference the Lua is tested against, and what the policy tables
test. Times are integer microseconds so that a burst of exactly ``limit``
requests fits a period whatever the limit (no floating-point drift): the
emission interval is ``floor(period / limit)``.

State per key is one number, the theoretical arrival time (TAT); the key expires
when the bucket is full again, so memory is O(1) per key and idle keys vanish.
"""

from __future__ import annotations

from dataclasses import dataclass

US_PER_MS = 1000


@dataclass(frozen=True)
class GcraResult:
    allowed: bool
    tat_us: int
    """The TAT to store when allowed (the old one, unchanged, when denied)."""
    remaining: int
    """Requests that would still pass right now after this one."""
    retry_after_us: int
    """0 when allowed; else how long until this request would pass."""
    reset_after_us: int
    """How long until the bucket is full again (the key's time to live)."""


def emission_interval_us(limit: int, period_us: int) -> int:
    if limit <= 0:
        raise ValueError("limit must be positive")
    return max(1, period_us // limit)


def gcra_decide(
    stored_tat_us: int | None, now_us: int, limit: int, period_us: int, cost: int = 1
) -> GcraResult:
    """Decide one request of ``cost`` against a ``limit`` per ``period_us`` bucket."""
    interval = emission_interval_us(limit, period_us)
    tat = now_us if stored_tat_us is None else max(stored_tat_us, now_us)
    new_tat = tat + interval * cost
    allow_at = new_tat - period_us
    if now_us < allow_at:
        return GcraResult(
            allowed=False,
            tat_us=tat,
            remaining=0,
            retry_after_us=allow_at - now_us,
            reset_after_us=tat - now_us,
        )
    return GcraResult(
        allowed=True,
        tat_us=new_tat,
        remaining=(now_us - allow_at) // interval,
        retry_after_us=0,
        reset_after_us=new_tat - now_us,
    )
