"""The acts of launch day, in order, with their timings (the full run ends within
about 18 minutes; ``--short`` within about 3).

Tracks run side by side, each a thread playing its acts in order (offsets from the start):

- **probes** (0 s): ``market`` (soft launch of SE with 5 places, 8 verified signups,
  then public), ``brute_force`` (a user's own reports of wallet PIN failures until the
  user is refused, its address untouched; then a trusted backend's reports of
  server-observed failures for distinct accounts from one address until the address is
  blocked), ``rate_limits`` (each class exhausted for a fresh user and address, checked
  at limit + 1; the staff bucket through an ops function; a service principal's own
  bucket; then every callable the server lists, called by a caller whose buckets are
  spent), ``population`` (stack.population's launch-day traffic under every attack, on a
  simulated clock, with a redis-server and a Firestore project of its own);
- **scaling**: media-processing (``SCALED_SERVICE``) first serves a revision taking
  ``service_latency_ms`` per request (so its 3 instances x 8 slots hold 120 RPS:
  capacity is the sandbox's slots, not this box's CPU), ``hold`` (its load at
  ``hold_rps``), ``push`` (``push_rps``,
  past the 65 % target), ``drop`` (``drop_rps`` until the end, long enough for the
  5-minute scale-down stabilisation);
- **deploy** (60 s): ``gates`` (pre-deploy validator for both versions; an unvalidated
  version refused), ``canary_bad`` (chat-service revision debiting a wrong token amount,
  canaried: rolled back by the judge), ``canary_good`` (a clean revision, 5 -> 25 ->
  100 %), with ``bakeSec`` and ``minRequestsPerStep`` shortened (documented
  ``pack391_startDeployment`` parameters), under chat_monetization load; then, once the
  attacks track has begun its first flood (``attacks_started``),
  ``canary_attack_bad`` and ``canary_attack_good`` (the same two revisions, each
  validated for chat-service and canaried in an environment of its own while the
  attacks are live: the judge must not be fooled by the platform);
- **isolation** (after the push): notification-service gets a revision answering
  ``isolation_error_pct`` % 500s at 100 % (a deploy that skipped the canary) under a
  small load until the guard isolates it, then its good revision back; when a later
  act needs a healthy platform (an isolated service fails every release's
  ``system_health`` gate), ``recover``: the good revision under ``recovery_rps`` until
  the guard's circuit closes (open 2 minutes, then 3 minutes under the threshold); then
  ``budget_freeze``: once ``pack391_getSloStatus`` shows the service's budget burning
  (the deploy freeze enforced for it), a release of it is validated (refused by the
  ``error_budget`` gate), the freeze lifted, the same release validated again (passes),
  the lift removed;
- **attacks** (after the deploy track's own canaries, and, for the canaries judged
  during an attack, once the isolated service recovered): ``attack_single`` (one
  address, ``single_rps``) and
  ``attack_distributed`` (``distributed_addresses`` addresses, ``distributed_rps`` in
  all), unauthenticated callable requests from distinct 127.x.y.z addresses, each
  started at second ``attack_second`` of a minute (recorded with the result);
- **backup** (the end): a backup (``pack391_backupFirestore`` as Cloud Scheduler runs
  it) and a restore drill of it.

The scheduler, the scaling guard, the canary judge, the DDoS detector and the SLO
evaluator run as in production, on their real minutes: nothing here triggers them.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from stack.platform.handle import StackHandle
from stack.rehearse.acts.attacks import Attacks
from stack.rehearse.acts.backup import Backup
from stack.rehearse.acts.deploys import Deploys
from stack.rehearse.acts.isolation import Isolation
from stack.rehearse.acts.probes import Probes
from stack.rehearse.acts.scaling import Scaling
from stack.rehearse.calls import Stack
from stack.rehearse.load import LoadPool
from stack.rehearse.platform import LocalPlatform
from stack.rehearse.recording import Act, Recording
from stack.rehearse.settings import (
    ATTACK_CANARY_CLAIMS,
    BUDGET_CLAIMS,
    DEPLOY_CLAIMS,
    SCALING_CLAIMS,
    Settings,
)
from stack.rehearse.timeline import Recorder

log = logging.getLogger("pack391.rehearse")

__all__ = ["Rehearsal", "Settings"]


class Rehearsal:
    """The tracks of launch day, side by side, each a thread (see the module doc)."""

    def __init__(
        self, handle: StackHandle, settings: Settings, pool: LoadPool, rec: Recording
    ) -> None:
        self.h = handle
        self.s = settings
        self.pool = pool
        self.rec = rec
        self.stack = Stack(handle)
        self.recorder = Recorder(handle, rec)
        self.platform = LocalPlatform(handle.redis_url)
        self.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self._rng = random.Random(self.run_id)
        # this run's own addresses: a second octet of its own, so an earlier run's blocks
        # (an hour) never meet this one on a long-running stack
        self.octet = self._rng.randrange(10, 250)
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.canary_done = threading.Event()
        self.pushed = threading.Event()
        self.attacks_done = threading.Event()
        self.attacks_started = threading.Event()
        """Set when the attacks track begins its first flood (or will not run)."""
        self.recovered = threading.Event()
        """Set when the isolated service is healthy again (or is not isolated at all)."""

    def addr(self, c: int, d: int) -> str:
        return f"127.{self.octet}.{c}.{d}"

    @contextlib.contextmanager
    def act(self, name: str, **detail: Any) -> Iterator[Act]:
        a = Act(name, time.time(), None, dict(detail))
        with self._lock:
            self.rec.acts.append(a)
        log.info("act %s begins", name)
        try:
            yield a
        finally:
            a.ended_at = time.time()
            log.info("act %s ends (%.0fs)", name, a.ended_at - a.started_at)

    def _track(self, name: str, body: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                body()
            except Exception as exc:
                log.exception("track %s failed", name)
                with self._lock:
                    self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------ the order

    def play(self) -> None:
        self.platform.wait_for_world(self.recorder.db)
        self.recorder.start()
        try:
            tracks = [self._track("probes", Probes(self).probes)]
            if self.s.wants(*SCALING_CLAIMS):
                tracks.append(self._track("scaling", Scaling(self).scaling))
            else:
                self.pushed.set()  # nothing to wait for
            if self.s.wants(*DEPLOY_CLAIMS, *ATTACK_CANARY_CLAIMS):
                tracks.append(self._track("deploy", Deploys(self).deploys))
            if self.s.wants("isolation", *BUDGET_CLAIMS):
                tracks.append(self._track("isolation", Isolation(self).isolation))
            else:
                self.recovered.set()
            if self.s.wants("ddos_detection", *ATTACK_CANARY_CLAIMS):
                tracks.append(self._track("attacks", Attacks(self).attacks))
            else:
                self.attacks_started.set()
                self.attacks_done.set()
            for thread in tracks:
                thread.join()
            if self.s.wants("restore_drill"):
                Backup(self).backup_and_drill()
        finally:
            self.recorder.stop()
        self.rec.ended_at = time.time()
        self.rec.docs.update(self.recorder.collect())
        for stream, seconds in self.pool.snapshot().items():
            from stack.rehearse.load import series_of

            for name, pts in series_of(stream, seconds).items():
                self.rec.extend(name, pts)
        self.recorder.close()
