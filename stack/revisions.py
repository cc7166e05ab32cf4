"""Local revisions: what ``firebase deploy`` and Cloud Run do for the sandbox's services.

Each service of the scaling registry has revisions on the local platform
(:class:`functions.deploy_guard.local.LocalTraffic`: the latest revision and the
traffic split in Redis, which the deploy guard reads and writes). This module adds what
a revision *is* locally: its faults, kept beside the split in
``pack391:local:revisions:{service}`` (revision -> JSON :class:`RevisionFaults`).

- :class:`LocalRevisions` (sync; the CLI and :mod:`stack.platform.world`): deploy a revision with
  faults (``pack391 deploy revision``), give a fresh service its first revision.
- :class:`stack.sandbox.routing.RevisionRouter` (async; the sandbox) reads them: it routes
  each request between a service's revisions by the split's shares and applies that
  revision's faults to that request only.

Faults of a revision: ``errorPct`` (that share of its requests answer 500),
``latencyMs`` (added to each of its requests), ``failPayouts`` (its ``/payout/request``
fails: 500, a ``failed`` payout with ``anomaly: true``), ``tokenMismatch`` (its
``/chat/message`` debits one token more than asked and records ``mismatch: true``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from functions.deploy_guard.local import LocalTraffic
from functions.scaling.api import PREFIX as PLATFORM_PREFIX
from shared import thresholds as t

REVISIONS_PREFIX = "pack391:local:revisions:"
"""``REVISIONS_PREFIX + service``: hash revision -> JSON faults."""

FIRST_REVISION_NUMBER = 1
REVISION_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""A Cloud Run revision name: lowercase letters, digits and hyphens, 63 at most."""


SERVICES: tuple[str, ...] = tuple(t.SCALING_SERVICE_INSTANCES)
"""The scaling registry's services: every one has revisions on the local platform."""


def split_key(service: str) -> str:
    """The hash :class:`LocalTraffic` keeps a service's split in (read here without it:
    the router's client is async)."""
    return f"{PLATFORM_PREFIX}:deploy:svc:{service}"


# ------------------------------------------------------------------- pure


@dataclass(frozen=True)
class RevisionFaults:
    """What a revision does wrong (nothing, by default)."""

    error_pct: float = 0.0
    latency_ms: float = 0.0
    fail_payouts: bool = False
    token_mismatch: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.error_pct <= 100:
            raise ValueError(f"errorPct must be 0-100: {self.error_pct}")
        if not 0 <= self.latency_ms <= 60_000:
            raise ValueError(f"latencyMs must be 0-60000: {self.latency_ms}")

    def to_json(self) -> str:
        return json.dumps(
            {
                "errorPct": self.error_pct,
                "latencyMs": self.latency_ms,
                "failPayouts": self.fail_payouts,
                "tokenMismatch": self.token_mismatch,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> RevisionFaults:
        data = json.loads(raw) if raw else {}
        return cls(
            error_pct=float(data.get("errorPct", 0.0)),
            latency_ms=float(data.get("latencyMs", 0.0)),
            fail_payouts=bool(data.get("failPayouts", False)),
            token_mismatch=bool(data.get("tokenMismatch", False)),
        )

    def wire(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.to_json()))


NO_FAULTS = RevisionFaults()


def revision_name(service: str, number: int) -> str:
    """``<service>-NNNNN``, as Cloud Run names a service's revisions."""
    return f"{service}-{number:05d}"


def next_revision_name(service: str, existing: Iterable[str]) -> str:
    """The next ``<service>-NNNNN`` after the numbered revisions in ``existing``."""
    numbers = [
        int(name[len(service) + 1 :])
        for name in existing
        if name.startswith(service + "-") and name[len(service) + 1 :].isdigit()
    ]
    return revision_name(service, max(numbers, default=FIRST_REVISION_NUMBER - 1) + 1)


def pick(split: Mapping[str, int], draw_pct: float) -> str | None:
    """The revision whose share covers ``draw_pct`` (0 <= draw < 100) in the split, in
    name order; None when nothing serves. Shares summing under 100 leave the rest to the
    largest share (the platform never drops a request)."""
    serving = sorted((rev, pct) for rev, pct in split.items() if pct > 0)
    if not serving:
        return None
    edge = 0.0
    for rev, pct in serving:
        edge += pct
        if draw_pct < edge:
            return rev
    return max(serving, key=lambda item: item[1])[0]


def percentile_95(latencies_ms: list[float]) -> float:
    ordered = sorted(latencies_ms)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0


# ---------------------------------------------------------- the platform side


class RevisionExists(ValueError):
    """``deploy`` was given the name of a revision the service already has."""


class LocalRevisions:
    """Revisions of the local platform and their faults (sync Redis, decoded responses)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self.traffic = LocalTraffic(client)

    @staticmethod
    def key(service: str) -> str:
        return REVISIONS_PREFIX + service

    def revisions(self, service: str) -> dict[str, RevisionFaults]:
        raw = cast(dict[str, str], self._redis.hgetall(self.key(service)))
        return {rev: RevisionFaults.from_json(spec) for rev, spec in sorted(raw.items())}

    def deploy(
        self,
        service: str,
        name: str | None = None,
        faults: RevisionFaults = NO_FAULTS,
        all_traffic: bool = True,
    ) -> str:
        """A new latest revision of ``service`` (named ``<service>-NNNNN`` unless ``name``)
        with ``faults``: it takes all traffic as ``firebase deploy`` gives a function's new
        revision, or none with ``all_traffic=False`` (``gcloud run deploy --no-traffic``;
        :meth:`LocalTraffic.deploy`). Answers its name."""
        known = self.revisions(service)
        seen = self.traffic.observe(service, "")
        existing = set(known) | set(seen.shares) | ({seen.latest_ready} - {None})
        rev = name or next_revision_name(service, cast(set[str], existing))
        if not REVISION_NAME.match(rev):
            raise ValueError(
                f"revision name {rev!r}: lowercase letters, digits and hyphens, "
                "starting with a letter, 63 at most"
            )
        if rev in existing:
            raise RevisionExists(f"{service} already has a revision {rev}")
        # the faults first: the revision serves nothing before the platform knows it
        self._redis.hset(self.key(service), rev, faults.to_json())
        self.traffic.deploy(service, rev, all_traffic)
        return rev

    def ensure_serving(self, service: str) -> str | None:
        """A service serving nothing gets its first revision (``<service>-00001``) at
        100 %, pinned (as ``pack391 deploy pin-traffic`` leaves it), so the next revision
        lands at 0 %. Answers the revision created, None when the service already serves."""
        if self.traffic.observe(service, "").shares:
            return None
        rev = self.deploy(service)
        self.traffic.apply(service, "", {rev: 100})
        return rev


def describe(revisions: LocalRevisions, service: str) -> dict[str, Any]:
    """What ``pack391 deploy revision`` prints: the service's revisions, faults, split."""
    seen = revisions.traffic.observe(service, "")
    return {
        "service": service,
        "latest": seen.latest_ready,
        "shares": seen.shares,
        "revisions": {rev: f.wire() for rev, f in revisions.revisions(service).items()},
    }
