"""Deploy guard tests read per-revision metrics from Redis several times per step on a
shared machine: the scaling tests' patient Redis timeout, reused."""

from __future__ import annotations

from tests.scaling.conftest import patient_redis

__all__ = ["patient_redis"]
