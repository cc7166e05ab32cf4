"""The HTTP health probe: a ``GET`` that passes on a 2xx within its timeout."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from shared import thresholds as t


@dataclass(frozen=True)
class ProbeResult:
    """One probe: ``ok`` (2xx in time), the HTTP status (None: no answer), how long it
    took, and why it failed when there was no answer."""

    ok: bool
    status: int | None
    ms: float
    error: str | None = None


def probe(url: str, timeout_sec: float = t.HEALTH_PROBE_TIMEOUT_SEC) -> ProbeResult:
    """GET ``url``: healthy on a 2xx within the timeout."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_sec) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        ms = (time.monotonic() - started) * 1000
        reason = getattr(exc, "reason", exc)
        return ProbeResult(False, None, ms, f"{type(exc).__name__}: {reason}")
    ms = (time.monotonic() - started) * 1000
    return ProbeResult(200 <= status < 300, status, ms)
