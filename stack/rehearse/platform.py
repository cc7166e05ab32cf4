"""The local platform as the rehearsal drives it: the stack's world, and revisions landed
and served as ``firebase deploy`` and Cloud Run do."""

from __future__ import annotations

import time
from typing import Any


class LocalPlatform:
    """The local platform's revisions (on the stack's Redis at ``redis_url``)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def wait_for_world(self, db: Any, timeout: float = 120.0) -> None:
        """The stack's world is there (``stack.platform.world``): the seven services registered in
        the scaling registry, each serving a revision."""
        from shared import collections as c
        from shared.redis import client_for_url
        from stack.revisions import SERVICES, LocalRevisions

        client = client_for_url(self.redis_url, timeout_ms=5000)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                registered = {s.id for s in db.collection(c.SCALING_SERVICES).stream()}
                revisions = LocalRevisions(client)
                serving = all(revisions.traffic.observe(s, "").shares for s in SERVICES)
                if serving and set(SERVICES) <= registered:
                    return
                time.sleep(2)
        finally:
            client.close()
        raise RuntimeError("the stack's world (registry and serving revisions) never appeared")

    def deploy_revision(self, service: str, **faults: Any) -> str:
        """A revision of ``service`` with ``faults`` on the local platform, landed as
        ``firebase deploy`` lands a function's: serving 100 % at once (the canary that
        follows takes it back to 5 %, its stable side from ``pack391_pinTraffic``'s
        snapshot)."""
        from shared.redis import client_for_url
        from stack.revisions import LocalRevisions, RevisionFaults

        client = client_for_url(self.redis_url, timeout_ms=5000)
        try:
            revisions = LocalRevisions(client)
            rev = revisions.deploy(service, faults=RevisionFaults(**faults))
            return rev
        finally:
            client.close()

    def serve_only(self, service: str, rev: str) -> None:
        from shared.redis import client_for_url
        from stack.revisions import LocalRevisions

        client = client_for_url(self.redis_url, timeout_ms=5000)
        try:
            LocalRevisions(client).traffic.apply(service, "", {rev: 100})
        finally:
            client.close()

    def serving(self, service: str) -> str:
        from shared.redis import client_for_url
        from stack.revisions import LocalRevisions

        client = client_for_url(self.redis_url, timeout_ms=5000)
        try:
            shares = LocalRevisions(client).traffic.observe(service, "").shares
        finally:
            client.close()
        return max(shares, key=lambda r: shares[r])
