"""What every track of the rehearsal plays with: the stack, the settings, the recording,
the load pool, the local platform, and the events the tracks wait for."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stack.rehearse.script import Rehearsal


class Track:
    """One track of the rehearsal (a thread playing its acts in order)."""

    def __init__(self, rehearsal: Rehearsal) -> None:
        self.r = rehearsal
        self.h = rehearsal.h
        self.s = rehearsal.s
        self.pool = rehearsal.pool
        self.rec = rehearsal.rec
        self.stack = rehearsal.stack
        self.recorder = rehearsal.recorder
        self.platform = rehearsal.platform
        self.run_id = rehearsal.run_id
        self.act = rehearsal.act
        self.addr = rehearsal.addr
        self.canary_done = rehearsal.canary_done
        self.pushed = rehearsal.pushed
        self.attacks_done = rehearsal.attacks_done
        self.attacks_started = rehearsal.attacks_started
        self.recovered = rehearsal.recovered
