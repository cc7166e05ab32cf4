"""What sends requests on the simulated clock (:class:`Actor`), and the small draws the
traffic makes."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.ratelimit.policy import EndpointClass


@dataclass
class Actor:
    """Something that sends requests: Poisson arrivals at ``per_min``, or evenly spaced."""

    per_min: float
    fire: Callable[[float], None]
    rng: random.Random
    even: bool = False
    until: float = math.inf

    def first(self, begin: float) -> float:
        if self.even:
            return begin + self.rng.uniform(0, 60.0 / self.per_min)
        return begin + self.rng.expovariate(self.per_min / 60.0)

    def after(self, t: float) -> float:
        if self.even:
            return t + 60.0 / self.per_min
        return t + self.rng.expovariate(self.per_min / 60.0)


def pick(rng: random.Random, mix: Sequence[tuple[EndpointClass, float]]) -> EndpointClass:
    x = rng.random()
    for cls, share in mix:
        x -= share
        if x < 0:
            return cls
    return mix[-1][0]


def ipv4(prefix: int, i: int) -> str:
    """The ``i``-th address of a made-up /8 (``prefix``), never ending in 0 or 255."""
    return f"{prefix}.{(i >> 14) & 255}.{(i >> 6) & 255}.{(i & 63) + 1}"


def random_iid(rng: random.Random) -> str:
    return ":".join(f"{rng.getrandbits(16):x}" for _ in range(4))
