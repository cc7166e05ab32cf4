"""The sandbox's control plane when it runs several workers (:mod:`stack.sandbox.workers`).

What must read the same whatever worker a request reaches, and how:

- **broadcast** (written to every worker, answered once all took it, else 503): the
  instances ``POST /__resize`` sets, the ``sandbox-errors`` fault ``POST /__faults``
  sets and the ``cloudrun-slow`` fault ``POST /__cloudrun`` sets (:class:`CloudRunStall`;
  each ttl as a deadline on the shared monotonic clock, so all expire it at once);
- **divided**: each service's slots and queue (``instances x 8`` each): worker ``i``
  holds its :func:`~stack.sandbox.capacity.portion` (at least one slot), and the kernel
  spreads connections between the workers;
- **aggregated when read**: ``GET /__health`` (``instances`` as set, ``inUse``,
  ``waiting``, ``shed`` summed) and ``GET /__group-commit`` (counts summed, the largest
  commit the largest), 503 while a worker does not answer (so the stack waits for all
  of them at start); each service's pushed sample, which worker 0 alone pushes, merged
  from every worker's counts (:func:`~stack.sandbox.capacity.merge_samples`);
- **per worker**, as several Cloud Run instances do: each revision's sample (the push
  path sums requests and errors and keeps the largest p95), the business events, the
  traffic split and revision faults (read from Redis by each), the Redis and Firestore
  connections and the group commit.

``GET /__worker`` answers the local view of whichever worker took the connection
(``index``, ``pid``, its own health and commit counts): what a test uses to see that
both workers serve. The workers reach each other over their control sockets (routes
under ``/w/``), never through the public port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from stack.group_commit import CommitStats
from stack.sandbox.capacity import merge_samples
from stack.sandbox.faults import FaultRequestError, parse_fault, public, request_json
from stack.sandbox.reporting import Reporter, push_samples
from stack.sandbox.workers import Peers, PeerUnavailable, WorkerSlot

if TYPE_CHECKING:
    from stack.sandbox.app import Sandbox

log = logging.getLogger("pack391.sandbox")

CONTROL_RUNNER = web.AppKey("control_runner", web.AppRunner)


# ---------------------------------------------------------------- the Cloud Run stall


def parse_stall(body: Any) -> tuple[float, float | None]:
    """``(delay_sec, until)`` of a ``POST /__cloudrun {"delayMs", "ttlSec"}`` body:
    ``until`` the monotonic deadline (None: until set back to 0).
    :class:`FaultRequestError` when malformed."""
    try:
        delay_ms = float(body.get("delayMs", 0))
        ttl = body.get("ttlSec")
        ttl_sec = float(ttl) if ttl is not None else None
    except (ValueError, TypeError, AttributeError) as exc:
        raise FaultRequestError("give delayMs (>= 0), ttlSec") from exc
    if delay_ms < 0 or (ttl_sec is not None and ttl_sec <= 0):
        raise FaultRequestError("delayMs >= 0, ttlSec > 0")
    return delay_ms / 1000, (time.monotonic() + ttl_sec if delay_ms and ttl_sec else None)


class CloudRunStall:
    """The ``cloudrun-slow`` fault (``pack391 chaos cloudrun-slow``): the Cloud Run Admin
    API answering slowly. On the local stack the Cloud Run API is this sandbox's resize
    hook (``POST /__resize``: the local scaler's instance change, what a service update
    is in production), so while the stall holds each resize is held ``delay_sec`` before
    the sandbox looks at it.

    A held resize whose caller gave up meanwhile (the scaler's hook timeout) is dropped,
    never applied late: a change the caller saw fail must not happen behind its back
    (the scale guard's records and the sandbox's instances stay the same). Setting the
    delay back to 0 (the undo) or the ttl's deadline releases every held resize at once."""

    def __init__(self) -> None:
        self.delay_sec = 0.0
        self._until: float | None = None
        self._lifted: asyncio.Event | None = None

    def set(self, delay_sec: float, until: float | None) -> None:
        """Hold each resize ``delay_sec`` until the monotonic ``until`` (None: until set
        back to 0); 0 releases the held ones."""
        if not delay_sec and self._lifted is not None:
            self._lifted.set()
            self._lifted = None
        self.delay_sec = delay_sec
        self._until = until if delay_sec else None
        log.warning("cloud run stall: %.0f ms per resize (until %s)", delay_sec * 1000, until)

    def current(self) -> float:
        """The delay now (the stall expired at its deadline: 0)."""
        if self._until is not None and time.monotonic() >= self._until:
            log.info("cloud run stall (%.0f ms) expired", self.delay_sec * 1000)
            self.set(0.0, None)
        return self.delay_sec

    def state(self) -> dict[str, Any]:
        """``{"delayMs", "ttlSec", "until"}`` (``until``: the deadline every worker shares)."""
        delay = self.current()
        until = self._until
        ttl_left = round(until - time.monotonic(), 3) if until is not None else None
        return {"delayMs": delay * 1000, "ttlSec": ttl_left, "until": until}

    async def hold(self, request: web.Request) -> bool:
        """Wait out the stall (if any) before the resize is looked at; False when the
        caller gave up meanwhile (its connection closed): drop the resize."""
        delay = self.current()
        if not delay:
            return True
        if self._lifted is None:
            self._lifted = asyncio.Event()
        lifted = self._lifted
        deadline = min(delay, self._until - time.monotonic()) if self._until else delay
        with contextlib.suppress(TimeoutError):  # the delay ran out: answer now
            await asyncio.wait_for(lifted.wait(), max(0.0, deadline))
        transport = request.transport
        return transport is not None and not transport.is_closing()

    async def handle(self, request: web.Request) -> web.Response:
        """``GET``: the stall; ``POST {"delayMs", "ttlSec"}``: set it (one worker)."""
        if request.method == "POST":
            try:
                self.set(*parse_stall(await request_json(request)))
            except FaultRequestError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(public_stall(self.state()))


def public_stall(state: dict[str, Any]) -> dict[str, Any]:
    """What ``/__cloudrun`` answers: ``delayMs`` and ``ttlSec`` (not the deadline)."""
    return {"delayMs": state["delayMs"], "ttlSec": state["ttlSec"]}


DROPPED = {"error": "the caller gave up while the Cloud Run stall held the resize"}
"""The answer to a held resize whose caller is gone (nobody reads it; for the log)."""


def merge_health(views: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Every worker's ``/__health`` as one: ``instances`` the largest (all hold the same
    once a resize is broadcast), ``inUse``, ``waiting`` and ``shed`` summed."""
    merged: dict[str, dict[str, int]] = {}
    for view in views:
        for sid, row in view.items():
            into = merged.setdefault(sid, {"instances": 0, "inUse": 0, "waiting": 0, "shed": 0})
            into["instances"] = max(into["instances"], int(row["instances"]))
            for key in ("inUse", "waiting", "shed"):
                into[key] += int(row[key])
    return merged


def merge_commit_stats(views: list[dict[str, Any]]) -> dict[str, Any]:
    """Every worker's ``/__group-commit`` counts as one (``writesPerCommit`` recomputed)."""
    merged = CommitStats(
        writes=sum(int(v["writes"]) for v in views),
        commits=sum(int(v["commits"]) for v in views),
        failed_commits=sum(int(v["failedCommits"]) for v in views),
        largest_commit=max((int(v["largestCommit"]) for v in views), default=0),
    )
    return {"groupCommit": bool(views[0]["groupCommit"])} | merged.as_json()


def _unavailable(exc: PeerUnavailable) -> web.Response:
    return web.json_response(
        {"error": f"sandbox worker unavailable ({exc})"},
        status=503,
        headers={"Retry-After": "1"},
    )


class ControlPlane:
    """The public control routes of one worker, answering for all (see module doc), and
    the ``/w/`` routes its control socket serves to the others."""

    def __init__(self, sandbox: Sandbox, slot: WorkerSlot) -> None:
        self.sandbox = sandbox
        self.slot = slot
        self.peers = Peers(slot)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/__resize", self.resize)
        app.router.add_get("/__health", self.health)
        app.router.add_get("/__faults", self.faults)
        app.router.add_post("/__faults", self.faults)
        app.router.add_get("/__cloudrun", self.cloud_run)
        app.router.add_post("/__cloudrun", self.cloud_run)
        app.router.add_get("/__group-commit", self.group_commit)
        app.router.add_get("/__worker", self.worker)
        app.on_startup.insert(0, self._start)
        app.on_cleanup.append(self._stop)

    # ------------------------------------------------------------ local views

    def local_commit_stats(self) -> dict[str, Any]:
        return {"groupCommit": self.sandbox.group_commit} | self.sandbox.commits.stats.as_json()

    def _control_app(self) -> web.Application:
        """What the control socket serves to the other workers: this worker alone."""
        sandbox = self.sandbox

        def answer(view: Callable[[], Any]) -> Any:
            async def handle(request: web.Request) -> web.Response:
                return web.json_response(view())

            return handle

        async def resize(request: web.Request) -> web.Response:
            body = await request.json()
            sandbox.apply_resize(str(body["serviceId"]), int(body["instances"]))
            return web.json_response({"ok": True})

        async def faults(request: web.Request) -> web.Response:
            body = await request.json()
            sandbox.injected.set(float(body["errorPct"]), body.get("until"))
            return web.json_response(sandbox.injected.state())

        async def cloud_run(request: web.Request) -> web.Response:
            body = await request.json()
            sandbox.cloud_run.set(float(body["delaySec"]), body.get("until"))
            return web.json_response(sandbox.cloud_run.state())

        app = web.Application()
        app.router.add_get("/w/health", answer(sandbox.local_health))
        app.router.add_get("/w/group-commit", answer(self.local_commit_stats))
        app.router.add_post("/w/samples", answer(sandbox.take_samples))
        app.router.add_post("/w/resize", resize)
        app.router.add_post("/w/faults", faults)
        app.router.add_post("/w/cloudrun", cloud_run)
        return app

    async def _start(self, app: web.Application) -> None:
        runner = web.AppRunner(self._control_app(), access_log=None)
        await runner.setup()
        await web.UnixSite(runner, self.slot.socket_path(self.slot.index)).start()
        app[CONTROL_RUNNER] = runner

    async def _stop(self, app: web.Application) -> None:
        await self.peers.close()
        await app[CONTROL_RUNNER].cleanup()

    # ------------------------------------------------------------ public routes

    async def resize(self, request: web.Request) -> web.Response:
        body = await request.json()
        service_id, instances = str(body.get("serviceId")), body.get("instances")
        if (
            service_id not in self.sandbox.services
            or not isinstance(instances, int)
            or (instances < 1)
        ):
            return web.json_response({"error": "unknown service or bad instances"}, status=400)
        if not await self.sandbox.cloud_run.hold(request):
            return web.json_response(DROPPED, status=504)
        self.sandbox.apply_resize(service_id, instances)
        try:
            await self.peers.all_others(
                "POST", "/w/resize", {"serviceId": service_id, "instances": instances}
            )
        except PeerUnavailable as exc:
            return _unavailable(exc)
        return web.json_response({"serviceId": service_id, "instances": instances})

    async def faults(self, request: web.Request) -> web.Response:
        injected = self.sandbox.injected

        def apply(body: Any) -> dict[str, Any]:
            pct, until = parse_fault(body)
            injected.set(pct, until)
            return {"errorPct": pct, "until": until}

        return await self._everywhere(request, apply, "/w/faults", lambda: public(injected.state()))

    async def cloud_run(self, request: web.Request) -> web.Response:
        stall = self.sandbox.cloud_run

        def apply(body: Any) -> dict[str, Any]:
            delay_sec, until = parse_stall(body)
            stall.set(delay_sec, until)
            return {"delaySec": delay_sec, "until": until}

        return await self._everywhere(
            request, apply, "/w/cloudrun", lambda: public_stall(stall.state())
        )

    async def _everywhere(
        self,
        request: web.Request,
        apply: Callable[[Any], dict[str, Any]],
        peer_path: str,
        state: Callable[[], Any],
    ) -> web.Response:
        """A POST sets a sandbox-wide setting here (``apply``: parse it, set it, the body
        for the other workers) and then on every other worker (``peer_path``); any
        method answers the setting's ``state``."""
        if request.method == "POST":
            try:
                peer_body = apply(await request_json(request))
            except FaultRequestError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            try:
                await self.peers.all_others("POST", peer_path, peer_body)
            except PeerUnavailable as exc:
                return _unavailable(exc)
        return web.json_response(state())

    async def health(self, request: web.Request) -> web.Response:
        try:
            others = await self.peers.all_others("GET", "/w/health")
        except PeerUnavailable as exc:
            return _unavailable(exc)
        return web.json_response(merge_health([self.sandbox.local_health(), *others]))

    async def group_commit(self, request: web.Request) -> web.Response:
        try:
            others = await self.peers.all_others("GET", "/w/group-commit")
        except PeerUnavailable as exc:
            return _unavailable(exc)
        return web.json_response(merge_commit_stats([self.local_commit_stats(), *others]))

    async def worker(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "index": self.slot.index,
                "workers": self.slot.count,
                "pid": os.getpid(),
                "health": self.sandbox.local_health(),
                "groupCommit": self.local_commit_stats(),
                "faults": public(self.sandbox.injected.state()),
            }
        )

    # ------------------------------------------------------------ reporting

    async def push_merged_samples(self, reporter: Reporter | None) -> int:
        """Worker 0: one sample per active service, merged from every worker's counts
        (a worker that does not answer keeps its counts for the next push); the others
        push none. How many were pushed."""
        if not self.slot.reporter:
            return 0
        views = [self.sandbox.take_samples()]
        for index in self.peers.others:
            try:
                views.append(await self.peers.call(index, "POST", "/w/samples"))
            except PeerUnavailable as exc:
                log.warning("service samples of worker %d not merged: %s", index, exc)
        samples = [
            merge_samples(sid, [v[sid] for v in views if sid in v], self.sandbox.interval_sec)
            for sid in self.sandbox.services
        ]
        return await push_samples([s for s in samples if s is not None], reporter)
