"""Cloud Run Admin API v2: the one client of the bundle.

:func:`services_client` picks the endpoint: Google's (application default credentials)
when deployed, or a local REST endpoint (the tests' Cloud Run fake, any stand-in that
speaks the v2 REST JSON) with anonymous credentials. :class:`CloudRunServices` is what
the areas call: read a service, set its manual instance count (scaling), set its
traffic split (deploy guard). Each update names only the fields it changes in its
update mask, and waits for the long-running operation.
"""

from __future__ import annotations

from typing import cast

from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

SCALING_MASK = ("scaling.scaling_mode", "scaling.manual_instance_count")
"""Fields a manual-scaling update writes (nothing else of the service changes)."""

TRAFFIC_MASK = ("traffic",)
"""Fields a traffic update writes."""

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

    def get(self, service: str, region: str) -> run_v2.Service:
        return self._client.get_service(name=self.name(service, region))

    def _update(
        self, service: run_v2.Service, mask: tuple[str, ...], timeout_sec: float
    ) -> tuple[run_v2.Service, str]:
        request = run_v2.UpdateServiceRequest(
            service=service, update_mask=field_mask_pb2.FieldMask(paths=list(mask))
        )
        operation = self._client.update_service(request=request)
        updated = cast(
            run_v2.Service,
            operation.result(timeout=timeout_sec),  # type: ignore[no-untyped-call]
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
