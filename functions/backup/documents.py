"""Firestore's data API for backups: one database's documents through its REST API (v1)
as typed JSON and through its gRPC API as ``Document`` protobufs.

The gRPC reader and the protobuf commits serve the logical backend
(:mod:`functions.backup.logical_write` and :mod:`functions.backup.logical_restore`); the
REST readers are kept as the benchmark's baselines and for the restore of JSON parts."""

from __future__ import annotations

import codecs
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import requests
from google.api_core.gapic_v1 import routing_header
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.cloud.firestore_v1.types import query as query_types
from google.cloud.firestore_v1.types import write as write_types

from functions.backup.policy import iso_micro
from shared.errors import FailedPrecondition
from shared.gcp import budget
from shared.thresholds import (
    BACKUP_PART_MAX_DOCS_COUNT,
    BACKUP_READ_PAGE_DOCS_COUNT,
    BACKUP_RESTORE_BATCH_DOCS_COUNT,
)

REST_READ_MAX_SEC = 120.0
"""A REST read's own bound (``requests``: between two chunks of the answer), when the run's
budget leaves more."""
GRPC_QUERY_MAX_SEC = 600.0
"""A raw ``RunQuery`` stream's own bound (a whole page), when the budget leaves more."""

_MIN_DOC_ID = "__id-9223372036854775808__"
"""The smallest document id in Firestore's ordering (a numeric id)."""

_GRPC_OPTIONS = (
    # Run a streamed call's reads on the calling thread instead of a helper thread and
    # a condition variable: a quarter of the Python CPU per streamed document (6 instead
    # of 25 microseconds measured), and less contention with the emulator on 2 cores.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
)

_RunQueryRequest = firestore_types.RunQueryRequest.pb()
_RunQueryResponse = firestore_types.RunQueryResponse.pb()
_CommitRequest = firestore_types.CommitRequest.pb()
_CommitResponse = firestore_types.CommitResponse.pb()
_StructuredQuery = query_types.StructuredQuery.pb()
_Write = write_types.Write.pb()
_ASCENDING = int(query_types.StructuredQuery.Direction.ASCENDING)


class GrpcChannel:
    """One lazily opened gRPC channel to Firestore, shared by every database of a
    project (the emulator's, or Google's with default credentials)."""

    def __init__(
        self, open_channel: Callable[[], grpc.Channel], metadata: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._open = open_channel
        self.metadata = tuple(metadata)
        """Sent with every call (the emulator's owner token)."""
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()
        self.run_query: Any = None
        self.commit: Any = None

    @classmethod
    def emulator(cls, host: str) -> GrpcChannel:
        """Plain-text, as the owner (which bypasses rules, as the Admin SDK does)."""
        return cls(
            lambda: grpc.insecure_channel(host, options=_GRPC_OPTIONS),
            [("authorization", "Bearer owner")],
        )

    @classmethod
    def google(cls, credentials: Any) -> GrpcChannel:
        from google.cloud.firestore_v1.services.firestore.transports.grpc import (
            FirestoreGrpcTransport,
        )

        return cls(
            lambda: FirestoreGrpcTransport.create_channel(
                "firestore.googleapis.com:443",
                credentials=credentials,
                scopes=["https://www.googleapis.com/auth/datastore"],
                options=_GRPC_OPTIONS,
            )
        )

    def ready(self) -> GrpcChannel:
        """Open the channel and its two stubs on first use. The stubs move raw
        protobufs (no proto-plus wrapper per document)."""
        with self._lock:
            if self._channel is None:
                channel = self._open()
                self.run_query = channel.unary_stream(
                    "/google.firestore.v1.Firestore/RunQuery",
                    request_serializer=_RunQueryRequest.SerializeToString,
                    response_deserializer=_RunQueryResponse.FromString,
                )
                self.commit = channel.unary_unary(
                    "/google.firestore.v1.Firestore/Commit",
                    request_serializer=_CommitRequest.SerializeToString,
                    response_deserializer=_CommitResponse.FromString,
                )
                self._channel = channel
        return self


class RestDocuments:
    """One database's documents through Firestore's REST API (v1), as typed JSON: the
    listing, the counts, the REST readers (the benchmark's baselines), the commits of
    JSON parts and a scratch database's cleanup."""

    def __init__(
        self,
        session: requests.Session,
        api_root: str,
        project: str,
        database: str,
    ) -> None:
        self._session = session
        self._api_root = api_root.rstrip("/")
        self.project = project
        self.database = database

    @property
    def database_path(self) -> str:
        return f"projects/{self.project}/databases/{self.database}"

    @property
    def documents_path(self) -> str:
        return f"{self.database_path}/documents"

    def _post(self, suffix: str, body: dict[str, Any]) -> Any:
        # each read waits at most what is left of the run's budget (a paused Firestore
        # once held a backup run for this call's whole 120 s)
        with budget.named(budget.FIRESTORE):
            response = self._session.post(
                f"{self._api_root}/{self.documents_path}{suffix}",
                json=body,
                timeout=budget.timeout(budget.FIRESTORE, REST_READ_MAX_SEC),
            )
        if response.status_code >= 400:
            raise requests.HTTPError(
                f"Firestore {suffix}: HTTP {response.status_code}: {response.text[:300]}",
                response=response,
            )
        return response.json()

    def root_collections(self, read_time: datetime | None = None) -> list[str]:
        """The top-level collection ids (a collection counts while any document at any
        depth under it exists), as of ``read_time`` when given."""
        ids: list[str] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"pageSize": 1000}
            if read_time is not None:
                body["readTime"] = iso_micro(read_time)
            if token:
                body["pageToken"] = token
            page = self._post(":listCollectionIds", body)
            ids.extend(page.get("collectionIds", []))
            token = page.get("nextPageToken")
            if not token:
                return sorted(ids)

    def _query(
        self, group: str | None, names_only: bool = False, within: str | None = None
    ) -> dict[str, Any]:
        """Every document of the collection group ``group`` (every collection with that
        id, at any depth), or of the whole database, ordered by name; with ``within``,
        only the documents under that top-level collection (:meth:`_tree_bounds`)."""
        selector: dict[str, Any] = {"allDescendants": True}
        if group is not None:
            selector["collectionId"] = group
        query: dict[str, Any] = {
            "from": [selector],
            "orderBy": [{"field": {"fieldPath": "__name__"}, "direction": "ASCENDING"}],
        }
        if within is not None:
            start, end = self._tree_bounds(within)
            query["startAt"] = {"values": [{"referenceValue": start}], "before": True}
            query["endAt"] = {"values": [{"referenceValue": end}], "before": True}
        if names_only:
            query["select"] = {"fields": [{"fieldPath": "__name__"}]}
        return query

    def _tree_bounds(self, top: str) -> tuple[str, str]:
        """The ``__name__`` range holding exactly the documents whose path starts with
        the top-level collection ``top``: the documents of ``top`` and of every
        subcollection under it, at any depth.

        The recipe of the Firestore client libraries' ``recursive()`` (recursive
        delete): from ``top/__id-9223372036854775808__`` (the smallest document id) to
        ``top<NUL>/__id-9223372036854775808__``, where the NUL sorts after every path that
        continues ``top/...`` and before any other collection id that starts with
        ``top``."""
        base = f"{self.documents_path}/{top}"
        return f"{base}/{_MIN_DOC_ID}", f"{base}\0/{_MIN_DOC_ID}"

    def pages(
        self,
        group: str | None,
        read_time: datetime | None,
        page_size: int = BACKUP_PART_MAX_DOCS_COUNT,
        *,
        names_only: bool = False,
        within: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``{"name", "fields"}`` documents, all read at ``read_time``; with
        ``within``, only the tree of that top-level collection."""
        query = self._query(group, names_only, within)
        query["limit"] = page_size
        while True:
            body: dict[str, Any] = {"structuredQuery": query}
            if read_time is not None:
                body["readTime"] = iso_micro(read_time)
            rows = self._post(":runQuery", body)
            docs = [row["document"] for row in rows if "document" in row]
            if docs:
                yield docs
            if len(docs) < page_size:
                return
            query = {
                **query,
                "startAt": {"values": [{"referenceValue": docs[-1]["name"]}], "before": False},
            }

    def stream(
        self,
        read_time: datetime | None,
        *,
        within: str | None = None,
        page_size: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> Iterator[dict[str, Any]]:
        """Every document (of one top-level collection's tree with ``within``) in name
        order, read at ``read_time``, parsed as the answer arrives: memory holds one
        document and one network chunk, whatever ``page_size`` (which only bounds how
        long one query runs; the emulator pays a fixed cost per query, so it is large)."""
        query = self._query(None, within=within)
        query["limit"] = page_size
        while True:
            body: dict[str, Any] = {"structuredQuery": query}
            if read_time is not None:
                body["readTime"] = iso_micro(read_time)
            url = f"{self._api_root}/{self.documents_path}:runQuery"
            read = 0
            last = ""
            wait = budget.timeout(budget.FIRESTORE, REST_READ_MAX_SEC)  # per read of a chunk
            with (
                budget.named(budget.FIRESTORE),
                self._session.post(url, json=body, timeout=wait, stream=True) as response,
            ):
                if response.status_code >= 400:
                    raise requests.HTTPError(
                        f"Firestore :runQuery: HTTP {response.status_code}: {response.text[:300]}",
                        response=response,
                    )
                for row in json_array_items(response.iter_content(chunk_size=1 << 16)):
                    doc = row.get("document")
                    if doc is not None:
                        read += 1
                        last = doc["name"]
                        yield doc
            if read < page_size:
                return
            query = {
                **query,
                "startAt": {"values": [{"referenceValue": last}], "before": False},
            }

    def relative(self, name: str) -> str:
        """``projects/P/databases/D/documents/a/b`` -> ``a/b``."""
        return name[len(self.documents_path) + 1 :]

    def count(
        self, group: str | None, read_time: datetime | None = None, within: str | None = None
    ) -> int:
        """Documents in a collection group (or the whole database, or one top-level
        collection's tree), as of ``read_time`` when given: one aggregation."""
        query = self._query(group, within=within)
        if within is None:
            del query["orderBy"]
        body: dict[str, Any] = {
            "structuredAggregationQuery": {
                "structuredQuery": query,
                "aggregations": [{"alias": "n", "count": {}}],
            }
        }
        if read_time is not None:
            body["readTime"] = iso_micro(read_time)
        rows = self._post(":runAggregationQuery", body)
        for row in rows:
            if "result" in row:
                return int(row["result"]["aggregateFields"]["n"]["integerValue"])
        return 0

    def is_empty(self) -> bool:
        return not self.root_collections()

    def commit(self, writes: list[dict[str, Any]]) -> None:
        self._post(":commit", {"writes": writes})

    def delete_everything(self) -> int:
        """Remove every document (a scratch target's cleanup): always the first page
        of what is left, so no cursor walks over deleted documents."""
        deleted = 0
        while True:
            query = self._query(None, names_only=True)
            query["limit"] = BACKUP_RESTORE_BATCH_DOCS_COUNT
            rows = self._post(":runQuery", {"structuredQuery": query})
            names = [row["document"]["name"] for row in rows if "document" in row]
            if not names:
                return deleted
            self.commit([{"delete": name} for name in names])
            deleted += len(names)


class FirestoreDocuments(RestDocuments):
    """One database's documents through Firestore's REST API (v1), as typed JSON, and
    through its gRPC API as ``Document`` protobufs (the backup's reader and the restore
    of its parts).

    Either encoding is Firestore's own, kept as is from read to write, so a backup
    never converts a value and every type round-trips exactly.

    The gRPC half is here; the REST half is :class:`RestDocuments`."""

    def __init__(
        self,
        session: requests.Session,
        api_root: str,
        project: str,
        database: str,
        grpc_channel: GrpcChannel | None = None,
    ) -> None:
        super().__init__(session, api_root, project, database)
        self._grpc = grpc_channel

    @classmethod
    def for_environment(cls, project: str, database: str = "(default)") -> FirestoreDocuments:
        """The emulator when ``FIRESTORE_EMULATOR_HOST`` is set (as its owner, which
        bypasses rules as the Admin SDK does), else Google with default credentials."""
        host = os.environ.get("FIRESTORE_EMULATOR_HOST")
        if host:
            session = requests.Session()
            session.headers["Authorization"] = "Bearer owner"
            return cls(session, f"http://{host}/v1", project, database, GrpcChannel.emulator(host))
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/datastore"])
        authorized = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        return cls(
            authorized,
            "https://firestore.googleapis.com/v1",
            project,
            database,
            GrpcChannel.google(credentials),
        )

    def with_database(self, database: str) -> FirestoreDocuments:
        return FirestoreDocuments(self._session, self._api_root, self.project, database, self._grpc)

    def _channel(self) -> GrpcChannel:
        if self._grpc is None:
            raise FailedPrecondition(
                f"no gRPC channel to {self.database_path}: the backup reader and the "
                "restore of protobuf parts need one (FirestoreDocuments.for_environment)"
            )
        return self._grpc.ready()

    def _metadata(self, routing: tuple[str, str]) -> list[tuple[str, str]]:
        """What the client libraries send: the database, the routing header, auth."""
        return [
            ("google-cloud-resource-prefix", self.database_path),
            routing_header.to_grpc_metadata((routing,)),  # type: ignore[no-untyped-call]
            *(self._grpc.metadata if self._grpc is not None else ()),
        ]

    def stream_documents(
        self,
        read_time: datetime,
        *,
        within: str,
        page_size: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> Iterator[Any]:
        """:meth:`stream` over gRPC: the ``google.firestore.v1.Document`` protobufs of
        one top-level collection's tree, in name order, read at ``read_time``, as they
        arrive (no conversion: the emulator spends a quarter of the CPU it spends on
        the same documents as REST JSON, docs/benchmarks.md)."""
        channel = self._channel()
        metadata = self._metadata(("parent", self.documents_path))
        start, end = self._tree_bounds(within)
        query = _StructuredQuery()
        query.from_.add(all_descendants=True)
        query.order_by.add(direction=_ASCENDING).field.field_path = "__name__"
        query.start_at.values.add(reference_value=start)
        query.start_at.before = True
        query.end_at.values.add(reference_value=end)
        query.end_at.before = True
        query.limit.value = page_size
        request = _RunQueryRequest(parent=self.documents_path, structured_query=query)
        request.read_time.FromDatetime(read_time.astimezone(UTC))
        while True:
            read = 0
            last = ""
            wait = budget.timeout(budget.FIRESTORE, GRPC_QUERY_MAX_SEC)
            with budget.named(budget.FIRESTORE):
                for row in channel.run_query(request, metadata=metadata, timeout=wait):
                    if row.HasField("document"):
                        doc = row.document
                        read += 1
                        last = doc.name
                        yield doc
            if read < page_size:
                return
            cursor = request.structured_query.start_at
            cursor.values[0].reference_value = last
            cursor.before = False

    def commit_documents(self, docs: Iterable[Any]) -> None:
        """Write ``Document`` protobufs (named in this database) in one commit."""
        channel = self._channel()
        request = _CommitRequest(
            database=self.database_path, writes=[_Write(update=doc) for doc in docs]
        )
        channel.commit(request, metadata=self._metadata(("database", self.database_path)))


_BETWEEN_ITEMS = re.compile(r"[\s,]*")


def json_array_items(chunks: Iterable[bytes]) -> Iterator[Any]:
    """The elements of a JSON array arriving in ``chunks`` (a streamed ``runQuery``
    answer), each yielded as soon as it is complete. A truncated array raises."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    opened = False
    for chunk in chunks:
        buffer += text.decode(chunk)
        if not opened:
            buffer = buffer.lstrip()
            if not buffer:
                continue
            if buffer[0] != "[":
                raise ValueError(f"not a JSON array: {buffer[:80]!r}")
            buffer, opened = buffer[1:], True
        pos = 0
        while True:
            match = _BETWEEN_ITEMS.match(buffer, pos)
            pos = match.end() if match else pos
            if pos >= len(buffer) or buffer[pos] == "]":
                break
            try:
                item, pos = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                break  # the element is not complete yet: wait for the next chunk
            yield item
        buffer = buffer[pos:]
    buffer += text.decode(b"", final=True)
    if not opened or buffer.strip() != "]":
        raise ValueError(f"truncated JSON array answer: {buffer[:80]!r}")
