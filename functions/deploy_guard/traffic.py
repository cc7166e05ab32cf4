"""The deploy guard's traffic writes: a deployment's split sent to its services.

:class:`TrafficWriter` pushes the wanted split conditionally (each service's etag read
before the generation is checked), records it applied, settles a final phase once the
platform confirmed it, and re-asserts a final split until the platform is seen serving
it. Separate from :mod:`functions.deploy_guard.service` (the calls) and
:mod:`functions.deploy_guard.canary` (the judging), which both apply through it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from google.api_core import exceptions as gexc

from functions.deploy_guard.policy.phases import confirmed, needs_confirmation, settled, split
from functions.deploy_guard.ports import (
    DeployPorts,
    Observed,
    TrafficConflict,
    TrafficNotApplied,
)
from shared.errors import FailedPrecondition
from shared.gcp.cloudrun import each_in_parallel
from shared.models.deploy import DeploymentDoc, ServiceTarget

log = logging.getLogger("pack391.deploy")

TRAFFIC_WRITE_ATTEMPTS = 3
"""Conditional traffic writes one call makes before it leaves the split to the next
monitor run (each refused write means another writer changed the service meanwhile)."""

PLATFORM_ERRORS: tuple[type[BaseException], ...] = (
    gexc.GoogleAPIError,
    TimeoutError,
    TrafficNotApplied,
    TrafficConflict,
)
"""What a traffic change may raise that leaves the deployment to retry next minute."""


class TrafficWriter:
    def __init__(self, ports: DeployPorts) -> None:
        self.p = ports

    def serving(self, name: str) -> tuple[Observed, str]:
        """What the platform holds for ``name``, and the revision serving most of it."""
        seen = self.p.splitter.observe(name, self.p.region)
        if not seen.shares:
            raise FailedPrecondition(f"service {name} serves no traffic (unknown service?)")
        return seen, max(sorted(seen.shares), key=lambda rev: seen.shares[rev])

    def push(self, dep: DeploymentDoc) -> bool:
        """Send ``dep``'s split to its services for ``dep.generation``, conditionally.

        Each service's etag is read *before* the generation is checked, and the write
        carries it: a later decision commits a new generation before it reads its own etag,
        so whichever write lands second is refused by the platform, and only the newest
        generation retries. False: a newer decision owns the platform (this one stops)."""
        pending = list(dep.services)
        for _attempt in range(TRAFFIC_WRITE_ATTEMPTS):
            etags = dict(
                each_in_parallel(
                    lambda t: (t.service, self.p.splitter.observe(t.service, t.region).etag),
                    pending,
                )
            )
            if self.p.store.generation(dep.deployment_id) != dep.generation:
                return False

            def write(
                target: ServiceTarget, etags: dict[str, str | None] = etags
            ) -> ServiceTarget | None:
                wanted = split(target, dep.traffic_percent)
                try:
                    serving = self.p.splitter.apply(
                        target.service, target.region, wanted, etags[target.service]
                    )
                except TrafficConflict:
                    return target
                if serving != wanted:
                    raise TrafficNotApplied(f"{target.service} serves {serving}, not {wanted}")
                return None

            conflicted = [t for t in each_in_parallel(write, pending) if t is not None]
            if not conflicted:
                return True
            pending = conflicted
        names = ", ".join(t.service for t in pending)
        raise TrafficConflict(f"{names} changed under every one of {TRAFFIC_WRITE_ATTEMPTS} writes")

    def apply(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        """Tell the platform the deployment's split (if not confirmed yet), then settle; a
        final split is confirmed on the platform (:meth:`_reconcile`)."""
        if dep.applied_percent != dep.traffic_percent:
            marked = None
            if self.push(dep):
                marked = self.p.store.mark_applied(
                    dep.deployment_id, dep.generation, dep.traffic_percent, now
                )
            if marked is None:  # a newer decision took over; it applies its own split
                log.info("deployment %s: split %s superseded", dep.deployment_id, dep.generation)
                return self.p.store.get(dep.deployment_id) or dep
            dep = marked
        if settled(dep, now) is not None:
            changed = self.p.store.update(dep.deployment_id, lambda d: settled(d, now), None)
            dep = changed[1] if changed else (self.p.store.get(dep.deployment_id) or dep)
        if needs_confirmation(dep):
            try:
                dep = self._reconcile(dep, now)
            except PLATFORM_ERRORS as exc:  # the split is decided: the monitor confirms it
                log.warning("deployment %s: not confirmed yet: %s", dep.deployment_id, exc)
        return dep

    def _reconcile(self, dep: DeploymentDoc, now: datetime) -> DeploymentDoc:
        """A final deployment: read what each service serves (``traffic_statuses``), send
        the final split again where it differs, and confirm once every service serves it
        (which frees the environment). Until then every monitor run comes back here."""

        def reassert(target: ServiceTarget) -> str | None:
            wanted = split(target, dep.traffic_percent)
            seen = self.p.splitter.observe(target.service, target.region)
            if seen.shares == wanted:
                return None
            log.warning(
                "deployment %s is %s but %s serves %s: sending %s again",
                dep.deployment_id,
                dep.phase.value,
                target.service,
                seen.shares,
                wanted,
            )
            serving = self.p.splitter.apply(target.service, target.region, wanted, seen.etag)
            if serving != wanted:
                raise TrafficNotApplied(f"{target.service} serves {serving}, not {wanted}")
            return target.service

        reasserted = [s for s in each_in_parallel(reassert, list(dep.services)) if s is not None]
        changed = self.p.store.update(
            dep.deployment_id, lambda d: confirmed(d, now, reasserted), None
        )
        return changed[1] if changed else dep
