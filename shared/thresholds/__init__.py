"""Every number of the PACK 391 spec, named with its unit and documented: one module per
area (:mod:`~shared.thresholds.scaling`, :mod:`~shared.thresholds.load`,
:mod:`~shared.thresholds.deploy`, :mod:`~shared.thresholds.ddos`,
:mod:`~shared.thresholds.ops`, :mod:`~shared.thresholds.market`,
:mod:`~shared.thresholds.backup`) and :mod:`~shared.thresholds.common` for what they share.

Nothing else in the bundle writes a spec number as a literal: policies import them from
here (``from shared import thresholds as t``; ``t.X``, or ``from shared.thresholds import
X``), so a change of policy is a one-line, reviewable diff. Every constant here is used by
the bundle (``functions/`` or ``shared/``); numbers only the local stack, the benchmarks or
the tests use live in :mod:`stack.constants` (``tests/shared/test_thresholds.py``).

Units are in the names: ``_pct`` (0-100), ``_ratio`` (0-1), ``_ms``, ``_sec``,
``_min``, ``_per_min``, ``_rps`` (requests per second), ``_count``.

Pure: this package imports nothing but the standard library.
"""

from __future__ import annotations

from shared.thresholds.backup import *  # noqa: F403
from shared.thresholds.common import *  # noqa: F403
from shared.thresholds.ddos import *  # noqa: F403
from shared.thresholds.deploy import *  # noqa: F403
from shared.thresholds.load import *  # noqa: F403
from shared.thresholds.market import *  # noqa: F403
from shared.thresholds.ops import *  # noqa: F403
from shared.thresholds.scaling import *  # noqa: F403
from shared.thresholds.slo import *  # noqa: F403
