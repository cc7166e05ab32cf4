"""Cloud Run Admin API v2: the one client of the bundle.

:func:`services_client` picks the endpoint: Google's (application default credentials)
when deployed, or a local REST endpoint (the tests' Cloud Run fake, any stand-in that
speaks the v2 REST JSON) with anonymous credentials. :class:`CloudRunServices` is what
the areas call: read a service, set its manual instance count (scaling), set its
traffic split (deploy guard). Each update names only the fields it changes in its
update mask, and waits for the long-running operation.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar, cast

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from shared import deadline
from shared.gcp import budget

SCALING_MASK = ("scaling.scaling_mode", "scaling.manual_instance_count")
"""Fields a manual-scaling update writes (nothing else of the service changes)."""

TRAFFIC_MASK = ("traffic",)
"""Fields a traffic update writes."""

DEPLOY_MASK = ("template", "traffic")
"""Fields a no-traffic deploy writes: the new template (a new revision) and the traffic
written out as explicit revision targets (``gcloud run deploy --no-traffic``)."""

READ_TIMEOUT_SEC = 10.0
"""Default deadline of one read (``get_service``)."""

MAX_PARALLEL_UPDATES = 8
"""Default bound of :func:`in_parallel`'s pool."""

_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
_LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


def services_client(endpoint: str | None = None) -> run_v2.ServicesClient:
    """Google's Cloud Run API (``endpoint`` None), or the REST API at ``endpoint`` (e.g.
    ``http://127.0.0.1:8123``) with anonymous credentials: how the local fake is used."""
    if endpoint is None:
        return run_v2.ServicesClient()
    return run_v2.ServicesClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
        client_options={"api_endpoint": endpoint},
    )


def short_revision(name: str) -> str:
    """``projects/p/locations/r/services/s/revisions/s-00002`` -> ``s-00002``."""
    return name.rsplit("/", 1)[-1]


def serving_shares(service: run_v2.Service) -> dict[str, int]:
    """Revision -> percent actually serving (``traffic_statuses``; a LATEST target is
    resolved to the latest ready revision)."""
    latest = short_revision(service.latest_ready_revision)
    shares: dict[str, int] = {}
    for status in service.traffic_statuses:
        revision = latest if status.type_ == _LATEST else short_revision(status.revision)
        if revision and status.percent:
            shares[revision] = shares.get(revision, 0) + int(status.percent)
    return shares


def function_service_id(function_name: str) -> str:
    """The Cloud Run service a 2nd-gen function runs as: its id lower-cased, ``_`` as ``-``
    (``pack391_checkRateLimit`` -> ``pack391-checkratelimit``), as the Cloud Functions API
    names the service it creates (read in firebase-tools 15.34.2)."""
    return function_name.lower().replace("_", "-")


def pinned_targets(service: run_v2.Service) -> list[run_v2.TrafficTarget]:
    """What serves now, as explicit revision targets: a LATEST share is bound to the
    revision that is latest *before* a deploy ("assigns any traffic assigned to the LATEST
    revision to the specific revision bound to LATEST before the deployment", gcloud run
    deploy --no-traffic), so a new revision gets none."""
    return [
        run_v2.TrafficTarget(type_=_REVISION, revision=rev, percent=pct)
        for rev, pct in sorted(serving_shares(service).items())
    ]


def manual_instances(service: run_v2.Service) -> int | None:
    """The service-level manual instance count (None: Cloud Run scales automatically)."""
    scaling = service.scaling
    if scaling.scaling_mode == run_v2.ServiceScaling.ScalingMode.MANUAL:
        return int(scaling.manual_instance_count)
    return None


class CloudRunServices:
    """The services of one project: read them, update their scaling or traffic."""

    def __init__(self, client: run_v2.ServicesClient, project: str) -> None:
        self._client = client
        self._project = project

    def name(self, service: str, region: str) -> str:
        return f"projects/{self._project}/locations/{region}/services/{service}"

    def get(
        self, service: str, region: str, timeout_sec: float = READ_TIMEOUT_SEC
    ) -> run_v2.Service:
        """The service as Cloud Run holds it; at most ``timeout_sec`` (then ``TimeoutError``
        or ``DeadlineExceeded``)."""
        with _transport_errors():
            return self._client.get_service(
                name=self.name(service, region),
                timeout=budget.timeout(budget.CLOUD_RUN, timeout_sec),
                retry=budget.retry(budget.CLOUD_RUN, timeout_sec),
            )

    def _update(
        self, service: run_v2.Service, mask: tuple[str, ...], timeout_sec: float
    ) -> tuple[run_v2.Service, str]:
        """One update, bounded as a whole: ``timeout_sec`` runs from sending the request to
        the operation being done (the request's own wait and the polling share it), so an
        update never holds its caller longer than that. Past it: ``TimeoutError`` (over
        REST) or ``DeadlineExceeded`` (gRPC), both what :func:`in_parallel` reports."""
        timeout_sec = budget.timeout(budget.CLOUD_RUN, timeout_sec)  # within the call's
        deadline = time.monotonic() + timeout_sec
        request = run_v2.UpdateServiceRequest(
            service=service, update_mask=field_mask_pb2.FieldMask(paths=list(mask))
        )
        with _transport_errors():
            operation = self._client.update_service(request=request, timeout=timeout_sec)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{service.name}: no answer within {timeout_sec:g} s")
            updated = cast(
                run_v2.Service,
                operation.result(timeout=remaining),  # type: ignore[no-untyped-call]
            )
        return updated, str(operation.operation.name)

    def set_manual_instances(
        self, service: str, region: str, instances: int, timeout_sec: float
    ) -> tuple[run_v2.Service, str]:
        """Manual scaling at ``instances``; answers the service as updated and the
        operation's name. Raises ``GoogleAPIError`` or ``TimeoutError``."""
        body = run_v2.Service(
            name=self.name(service, region),
            scaling=run_v2.ServiceScaling(
                scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL,
                manual_instance_count=instances,
            ),
        )
        return self._update(body, SCALING_MASK, timeout_sec)

    def deploy_image(
        self,
        service: str,
        region: str,
        image: str,
        revision: str | None,
        timeout_sec: float,
    ) -> tuple[run_v2.Service, str]:
        """A new revision of ``service`` running ``image`` that serves no traffic (the Admin
        API's ``gcloud run deploy --no-traffic``): one conditional update writing the new
        template and the current split as explicit revision targets. Answers the service as
        updated and the new revision's short name. Raises :class:`NewRevisionServes` when
        Cloud Run reports the new revision serving anything."""
        current = self.get(service, region)
        template = run_v2.RevisionTemplate(current.template)
        if template.containers:
            template.containers[0].image = image
        else:
            template.containers.append(run_v2.Container(image=image))
        template.revision = revision or ""
        body = run_v2.Service(
            name=self.name(service, region),
            template=template,
            traffic=pinned_targets(current),
            etag=current.etag,
        )
        updated = self._update(body, DEPLOY_MASK, timeout_sec)[0]
        created = short_revision(updated.latest_ready_revision)
        if serving_shares(updated).get(created):
            raise NewRevisionServes(
                f"{service}: new revision {created} serves {serving_shares(updated)[created]} %"
            )
        return updated, created

    def set_traffic(
        self,
        service: str,
        region: str,
        split: dict[str, int],
        etag: str | None,
        timeout_sec: float,
    ) -> run_v2.Service:
        """Revision targets for ``split`` (revision -> percent). With ``etag`` the update is
        conditional: Cloud Run refuses it with 409 ``ABORTED`` (``gexc.Conflict``) when the
        service changed since it was read."""
        body = run_v2.Service(
            name=self.name(service, region),
            traffic=[
                run_v2.TrafficTarget(type_=_REVISION, revision=rev, percent=pct)
                for rev, pct in sorted(split.items())
            ],
            etag=etag or "",
        )
        return self._update(body, TRAFFIC_MASK, timeout_sec)[0]


class NewRevisionServes(Exception):
    """A revision deployed to serve no traffic serves some (the pipeline stops)."""


@contextmanager
def _transport_errors() -> Iterator[None]:
    """The REST transport's own failures as the exceptions callers handle: a read that
    timed out is ``TimeoutError`` (gRPC answers ``DeadlineExceeded`` itself), any other
    connection failure ``ServiceUnavailable``."""
    try:
        with budget.named(budget.CLOUD_RUN):  # the call's budget ran out: name Cloud Run
            yield
    except requests.exceptions.Timeout as exc:
        raise TimeoutError(f"Cloud Run did not answer in time: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        unavailable = gexc.ServiceUnavailable(  # type: ignore[no-untyped-call]
            f"Cloud Run unreachable: {exc}"
        )
        raise unavailable from exc


K = TypeVar("K")
T = TypeVar("T")


def in_parallel(
    calls: Mapping[K, Callable[[], T]],
    deadline_sec: float | None,
    max_workers: int = MAX_PARALLEL_UPDATES,
) -> dict[K, T | BaseException]:
    """Run every call at once (at most ``max_workers`` at a time, on a pool of threads: the
    ``run_v2`` clients are thread-safe) and answer each key's result or the exception it
    raised, waiting at most ``deadline_sec`` in all. A call still running then is answered
    ``TimeoutError`` and left to finish in the background, so one slow call never costs
    the others' results; bound each call itself too (an update's ``timeout_sec``, a
    read's), so nothing outlives its function. With ``max_workers`` at least the number
    of calls, the whole takes as long as the slowest call, not the sum.

    Each call runs under the caller's budget (:mod:`shared.deadline`). ``deadline_sec``
    None: wait for every call (each bounded by its own timeouts and the budget).

    The one fan-out of the bundle: the scale guard's per-service work, and the deploy
    guard's traffic reads and writes (through :func:`each_in_parallel`)."""
    if not calls:
        return {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(calls))))
    try:
        # each call under the caller's budget (shared.deadline): threads do not inherit it
        futures: dict[K, Future[T]] = {
            key: pool.submit(deadline.in_context(call)) for key, call in calls.items()
        }
        wait(futures.values(), timeout=None if deadline_sec is None else max(0.0, deadline_sec))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    answers: dict[K, T | BaseException] = {}
    for key, future in futures.items():
        if not future.done():
            answers[key] = TimeoutError(f"{key}: not done within {deadline_sec:g} s")
        elif future.cancelled():
            answers[key] = TimeoutError(f"{key}: not started within {deadline_sec:g} s")
        else:
            error = future.exception()
            answers[key] = error if error is not None else future.result()
    return answers


def each_in_parallel(work: Callable[[T], K], items: Sequence[T], max_workers: int = 16) -> list[K]:
    """``work`` over ``items`` at once (:func:`in_parallel`, waiting for all, under the
    caller's budget): the results in ``items``' order, or the first item's exception
    once every call has finished. A deployment's services are updated this way, so a
    rollback of N services takes one Cloud Run operation's time, not N."""
    answers = in_parallel(
        {i: functools.partial(work, item) for i, item in enumerate(items)}, None, max_workers
    )
    results: list[K] = []
    for i in range(len(items)):
        answer = answers[i]
        if isinstance(answer, BaseException):
            raise answer
        results.append(answer)
    return results
