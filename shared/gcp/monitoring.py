"""Cloud Monitoring v3: the one reader of the bundle.

:func:`metric_client` picks the endpoint: Google's when deployed, or a local gRPC
endpoint (the tests' fake) over an insecure channel. :class:`MonitoringReader` runs one
time-series query (a metric filter, an interval, an aggregation aligned per period) and
answers plain per-period samples, newest first, with each series' metric labels; the
scaling metrics source and the deploy guard's per-revision metrics are built on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.cloud import monitoring_v3

from shared.gcp import budget

Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer

CPU = "run.googleapis.com/container/cpu/utilizations"
LATENCY = "run.googleapis.com/request_latencies"
REQUESTS = "run.googleapis.com/request_count"
QUEUE_DEPTH = "cloudtasks.googleapis.com/queue/depth"

LIST_DEFAULT_SEC = 90.0
"""``ListTimeSeries``' own default deadline (the GAPIC client's method config), the bound of
a query made with no timeout of its own."""


def metric_client(target: str | None = None) -> monitoring_v3.MetricServiceClient:
    """Google's Monitoring API (``target`` None), or the gRPC API at ``target``
    (``host:port``) over an insecure channel: how the local fake is used."""
    if target is None:
        return monitoring_v3.MetricServiceClient()
    import grpc
    from google.cloud.monitoring_v3.services.metric_service.transports import (
        MetricServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(target)
    return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))


@dataclass(frozen=True)
class Query:
    """One aggregated query: the metric, how each series is aligned per period, how the
    series are reduced, and the labels kept apart while reducing."""

    metric: str
    aligner: Any
    reducer: Any
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One aligned period of one series: its end and its value."""

    end: datetime
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a query's answer: its metric labels (those kept by ``group_by``) and
    its samples, newest first."""

    labels: Mapping[str, str]
    samples: Sequence[Sample]


def cloud_run_filter(metric: str, service: str, region: str, revision: str | None = None) -> str:
    """A Cloud Run service's (or one revision's) series of ``metric``."""
    found = (
        f'metric.type = "{metric}" AND resource.type = "cloud_run_revision" '
        f'AND resource.labels.service_name = "{service}" '
        f'AND resource.labels.location = "{region}"'
    )
    if revision is not None:
        found += f' AND resource.labels.revision_name = "{revision}"'
    return found


def cloud_tasks_filter(metric: str, queue: str) -> str:
    """A Cloud Tasks queue's series of ``metric``."""
    return (
        f'metric.type = "{metric}" AND resource.type = "cloud_tasks_queue" '
        f'AND resource.labels.queue_id = "{queue}"'
    )


def number(value: monitoring_v3.TypedValue) -> float:
    """A point's value as a float (a distribution gives its mean)."""
    kind = monitoring_v3.TypedValue.pb(value).WhichOneof("value")
    if kind == "int64_value":
        return float(value.int64_value)
    if kind == "distribution_value":
        return float(value.distribution_value.mean)
    return float(value.double_value)


class MonitoringReader:
    """Time-series queries on one project."""

    def __init__(
        self,
        client: monitoring_v3.MetricServiceClient,
        project: str,
        timeout_sec: float | None = None,
    ) -> None:
        self._client = client
        self._project = project
        self._timeout_sec = timeout_sec
        """Deadline of one query (None: the client library's default)."""

    def series(
        self,
        query: Query,
        filter_: str,
        start: datetime,
        end: datetime,
        period: timedelta,
    ) -> list[Series]:
        """The series ``filter_`` selects in [start, end], aligned per ``period``."""
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self._project}",
            filter=filter_,
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=period,
                per_series_aligner=query.aligner,
                cross_series_reducer=query.reducer,
                group_by_fields=list(query.group_by),
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        return [
            Series(
                labels=dict(found.metric.labels),
                samples=[Sample(p.interval.end_time, number(p.value)) for p in found.points],
            )
            for found in self._list(request)
        ]

    def _list(self, request: monitoring_v3.ListTimeSeriesRequest) -> Any:
        # within the call's budget (shared.gcp.budget); the client's own default otherwise
        ceiling = self._timeout_sec if self._timeout_sec is not None else LIST_DEFAULT_SEC
        with budget.named(budget.MONITORING):
            return self._client.list_time_series(
                request=request,
                timeout=budget.timeout(budget.MONITORING, ceiling),
                retry=budget.retry(budget.MONITORING, ceiling),  # UNAVAILABLE, as its own
            )
