"""What the sandbox pushes: each service's sample to ``pack391_reportServiceMetrics``
(the scaling push path, registering the resize hook), each revision's to
``pack391_reportRevisionMetrics`` (the canary judge's)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import ClientSession, ClientTimeout

from stack.sandbox.capacity import ServiceSim
from stack.sandbox.routing import RevisionReporter

log = logging.getLogger("pack391.sandbox")

Reporter = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Pushes one service's sample (service id, sample)."""


async def push_service_samples(
    services: Iterable[ServiceSim], interval_sec: float, reporter: Reporter | None
) -> int:
    """Push one sample per active service (each sample resets its counts); how many were
    pushed."""
    samples = [sample for s in services if (sample := s.sample(interval_sec)) is not None]
    return await push_samples(samples, reporter)


async def push_samples(samples: Iterable[dict[str, Any]], reporter: Reporter | None) -> int:
    """Push each service's sample (a failed push is logged); how many were pushed."""
    pushed = 0
    for sample in samples:
        if reporter is not None:
            try:
                await reporter(sample["serviceId"], sample)
                pushed += 1
            except Exception:
                log.exception("metrics push for %s failed", sample["serviceId"])
    return pushed


def functions_reporter(functions_url: str, token: str, hook_url: str) -> Reporter:
    """Push samples to ``pack391_reportServiceMetrics`` over the callable protocol."""

    async def report(service_id: str, sample: dict[str, Any]) -> None:
        async with (
            ClientSession(timeout=ClientTimeout(total=5)) as session,
            session.post(
                f"{functions_url}/pack391_reportServiceMetrics",
                json={"data": sample | {"resizeHookUrl": hook_url}},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            if response.status != 200:
                log.warning("metrics push %s: %s", response.status, await response.text())

    return report


def revision_reporter(functions_url: str, token: str) -> RevisionReporter:
    """Push samples to ``pack391_reportRevisionMetrics`` over the callable protocol."""

    async def report(sample: dict[str, Any]) -> None:
        async with (
            ClientSession(timeout=ClientTimeout(total=5)) as session,
            session.post(
                f"{functions_url}/pack391_reportRevisionMetrics",
                json={"data": sample},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            if response.status != 200:
                log.warning("revision push %s: %s", response.status, await response.text())

    return report
