"""The canary judge's test over minutes: a one-sided Mann-Whitney U test, pure Python.

Kayenta (Spinnaker's canary judge) compares each metric's canary points with the
baseline's by a Mann-Whitney U test; this is the same test with the normal approximation,
the tie correction of the variance and the continuity correction (the textbook form, and
what ``scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")``
computes):

- ranks of the pooled sample, tied values getting the mean of their ranks;
- ``U = R_x - n_x (n_x + 1) / 2`` (``R_x``: the sum of ``x``'s ranks);
- mean ``n_x n_y / 2``, variance ``n_x n_y / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1)))``
  over the tie groups of sizes ``t``;
- ``z = (U - mean - 1/2) / sd`` and ``p = P(Z >= z)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MannWhitney:
    u: float
    """``U`` of the first sample (how many of its pairs with the second it wins, ties
    counting a half)."""
    z: float
    p_greater: float
    """One-sided p-value of "the first sample is stochastically greater"."""


def average_ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """The 1-based rank of each value (tied values share the mean of their ranks) and the
    sizes of the groups of tied values (groups of one included)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    groups: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        groups.append(j - i + 1)
        i = j + 1
    return ranks, groups


def mann_whitney_greater(
    x: Sequence[float], y: Sequence[float], continuity: bool = True
) -> MannWhitney:
    """Whether ``x`` is stochastically greater than ``y`` (one-sided). Raises ValueError
    on an empty sample. All values tied: no evidence either way, ``p`` 1."""
    n_x, n_y = len(x), len(y)
    if n_x == 0 or n_y == 0:
        raise ValueError("both samples need at least one value")
    ranks, groups = average_ranks([*x, *y])
    u = sum(ranks[:n_x]) - n_x * (n_x + 1) / 2
    n = n_x + n_y
    mean = n_x * n_y / 2
    ties = sum(g**3 - g for g in groups)
    variance = n_x * n_y / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return MannWhitney(u=u, z=0.0, p_greater=1.0)
    z = (u - mean - (0.5 if continuity else 0.0)) / math.sqrt(variance)
    return MannWhitney(u=u, z=z, p_greater=0.5 * math.erfc(z / math.sqrt(2)))
