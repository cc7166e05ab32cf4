"""Disaster-recovery I/O: the backup store port, its two backends, and the catalog.

- :class:`LogicalBackupStore` streams every document through Firestore's gRPC API
  (any Firestore, the emulator included) at one ``readTime``, as the raw ``Document``
  protobufs, into encrypted parts (see :mod:`functions.backup.archive`) written to one
  destination per region (a directory or a ``gs://`` prefix,
  :mod:`functions.backup.destinations`). The REST readers that came before it are kept
  as the benchmark's baselines (and their backups are still restored).
- :class:`ManagedBackupStore` drives Firestore's managed export, PITR and clones
  through ``google.cloud.firestore_admin_v1.FirestoreAdminClient``.
- :class:`BackupCatalog` keeps the catalog, reports, alerts and drills in Firestore.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import grpc
import requests
from google.api_core import exceptions as gexc
from google.api_core.gapic_v1 import routing_header
from google.cloud import firestore
from google.cloud.firestore_admin_v1 import FirestoreAdminClient
from google.cloud.firestore_admin_v1.types import (
    CloneDatabaseRequest,
    Database,
    ExportDocumentsMetadata,
    ExportDocumentsRequest,
    OperationState,
    PitrSnapshot,
)
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.cloud.firestore_v1.types import query as query_types
from google.cloud.firestore_v1.types import write as write_types
from google.longrunning import operations_pb2  # type: ignore[import-untyped]

from functions.backup import archive
from functions.backup.archive import (
    BackupIntegrityError,
    BackupKey,
    Manifest,
    PartContext,
    PartEntry,
)
from functions.backup.destinations import BackupDestination, LocalDirectory, destination_for
from functions.backup.policy import PitrState, align_down
from shared import collections
from shared.audit import Change, write_audit
from shared.clock import iso
from shared.config import (
    BACKUP_BACKEND,
    BACKUP_BUCKETS,
    BACKUP_DESTINATIONS,
    BACKUP_DRILL_DATABASE,
    BACKUP_KEY,
    BACKUP_KMS_KEY,
    BACKUP_LOCAL_ROOT,
    is_emulated,
)
from shared.errors import FailedPrecondition, InvalidInput, Pack391Error
from shared.models.alerts import AlertDoc, Severity
from shared.models.backup import (
    BackupAlert,
    BackupBackend,
    BackupRecord,
    BackupStatus,
    DrillRecord,
    VerificationReport,
)
from shared.thresholds import (
    BACKUP_PART_MAX_DOCS_COUNT,
    BACKUP_REGIONS,
    BACKUP_RESTORE_BATCH_DOCS_COUNT,
    BACKUP_SNAPSHOT_ALIGN_SEC,
)

SOURCE_DIR = Path(__file__).resolve().parent.parent.parent
"""The deployed bundle's source directory (firestore.rules and the index file are there)."""

BUNDLE_META_FILES = ("firestore.rules", "firestore.indexes.json")
"""Saved with every logical backup."""

MANIFEST = "manifest.json"
_OPERATION_TIMEOUT_SEC = 3600.0
BACKUP_READ_PAGE_DOCS_COUNT = 50_000
"""Documents per query of the parallel reader (streamed, so not held in memory): the
emulator pays about a second of CPU per query with a ``readTime`` whatever its size, so
pages of 5,000 cost a third of a backup there (docs/benchmarks.md)."""

BACKUP_READ_THREADS_COUNT = 4
"""Top-level collection trees a logical backup reads at once (measured in
docs/benchmarks.md: more threads than trees, or than the server's cores, add nothing)."""

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


class NonEmptyTarget(FailedPrecondition):
    """A restore refused to write into a database that already holds documents."""


# ----------------------------------------------------------- Firestore REST


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


class FirestoreDocuments:
    """One database's documents through Firestore's REST API (v1), as typed JSON, and
    through its gRPC API as ``Document`` protobufs (the backup's reader and the restore
    of its parts).

    Either encoding is Firestore's own, kept as is from read to write, so a backup
    never converts a value and every type round-trips exactly."""

    def __init__(
        self,
        session: requests.Session,
        api_root: str,
        project: str,
        database: str,
        grpc_channel: GrpcChannel | None = None,
    ) -> None:
        self._session = session
        self._api_root = api_root.rstrip("/")
        self.project = project
        self.database = database
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

    @property
    def database_path(self) -> str:
        return f"projects/{self.project}/databases/{self.database}"

    @property
    def documents_path(self) -> str:
        return f"{self.database_path}/documents"

    def _post(self, suffix: str, body: dict[str, Any]) -> Any:
        response = self._session.post(
            f"{self._api_root}/{self.documents_path}{suffix}", json=body, timeout=120
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
            with self._session.post(url, json=body, timeout=120, stream=True) as response:
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
            for row in channel.run_query(request, metadata=metadata, timeout=600):
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


_SubmitPart = Callable[[str, int, list[Any]], None]
"""Hand a part's records (NDJSON lines, or ``Document`` protobufs for the gRPC reader),
with its top-level collection and number in its series, to sealing."""


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


@dataclass(frozen=True)
class Census:
    """What a backup read: documents by collection group and by top-level collection."""

    groups: dict[str, int]
    tops: dict[str, int]


def iso_micro(moment: datetime) -> str:
    """RFC 3339 with microseconds (Firestore's ``readTime``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rebase(value: Any, old: str, new: str) -> Any:
    """Point references into the source database at the target database instead."""
    if isinstance(value, dict):
        ref = value.get("referenceValue")
        if isinstance(ref, str) and (ref == old or ref.startswith(old + "/")):
            return {"referenceValue": new + ref[len(old) :]}
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    return value


def _rebase_value(value: Any, old: str, new: str) -> None:
    """:func:`_rebase` for a ``google.firestore.v1.Value`` protobuf, in place."""
    kind = value.WhichOneof("value_type")
    if kind == "reference_value":
        ref = value.reference_value
        if ref == old or ref.startswith(old + "/"):
            value.reference_value = new + ref[len(old) :]
    elif kind == "map_value":
        for item in value.map_value.fields.values():
            _rebase_value(item, old, new)
    elif kind == "array_value":
        for item in value.array_value.values:
            _rebase_value(item, old, new)


# ------------------------------------------------------------ the port


@dataclass(frozen=True)
class CreatedBackup:
    """What a store reports about a backup it finished."""

    locations: dict[str, str]
    document_count: int
    collection_counts: dict[str, int]
    size_bytes: int
    key_id: str | None
    operations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DrillOutcome:
    target: str
    ok: bool
    documents: int
    duration_sec: float
    cleaned_up: bool
    detail: str


class BackupStore(Protocol):
    """Where backups go and come back from; one implementation per backend."""

    backend: BackupBackend
    regions: Sequence[str]

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        """Take a consistent backup at ``snapshot_time`` into every region."""
        ...

    def verify(self, record: BackupRecord, region: str) -> None:
        """Raise :class:`BackupIntegrityError` unless ``region``'s copy is complete and
        readable."""
        ...

    def delete(self, record: BackupRecord) -> bool:
        """Remove every copy; False when the storage removes it itself (lifecycle)."""
        ...

    def pitr_state(self) -> PitrState: ...

    def drill(
        self, record: BackupRecord | None, point_in_time: datetime | None, region: str, tag: str
    ) -> DrillOutcome:
        """Restore into a scratch target, check it, time it, and clean up."""
        ...


# ------------------------------------------------------------- logical


@dataclass(frozen=True)
class RestoreResult:
    documents: int
    group_counts: dict[str, int]
    """Documents per collection group in the target after the restore."""
    duration_sec: float


READERS = ("grpc", "rest", "one-pass")
"""The logical backup's readers: ``grpc`` (the default: the top-level collection trees
read in parallel over gRPC, parts of ``Document`` protobufs, schema version 3);
``rest`` (the same trees over REST, NDJSON parts, version 2) and ``one-pass`` (one
ordered REST pass, version 2): the benchmark's baselines."""


class LogicalBackupStore:
    """Encrypted parts in one destination per region (directory or gs:// prefix)."""

    backend = BackupBackend.LOGICAL

    def __init__(
        self,
        source: FirestoreDocuments,
        key: BackupKey,
        destinations: Mapping[str, BackupDestination | Path],
        *,
        drill_database: str = "pack391-drill",
        pitr: PitrInspector | None = None,
        workers: int = 2,
        readers: int = BACKUP_READ_THREADS_COUNT,
        reader: str = "grpc",
        meta_dir: Path = SOURCE_DIR,
        part_docs: int = BACKUP_PART_MAX_DOCS_COUNT,
        read_page: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> None:
        """``workers`` seal and write parts (and write a restore's batches);
        ``readers`` read top-level collection trees at once; ``reader`` is one of
        :data:`READERS` (the REST ones are the benchmark's baselines)."""
        if reader not in READERS:
            raise ValueError(f"reader {reader!r} is not one of {READERS}")
        self._source = source
        self._key = key
        self._dest: dict[str, BackupDestination] = {
            region: LocalDirectory(d) if isinstance(d, Path) else d
            for region, d in destinations.items()
        }
        self.regions: Sequence[str] = tuple(self._dest)
        self._drill_database = drill_database
        self._pitr = pitr
        self._workers = workers
        self._readers = readers
        self._reader = reader
        self._schema_version = (
            archive.SCHEMA_VERSION if reader == "grpc" else archive.JSON_SCHEMA_VERSION
        )
        self._meta_dir = meta_dir
        self._part_docs = part_docs
        self._read_page = read_page

    def location(self, region: str, backup_id: str) -> str:
        return self._dest[region].uri(backup_id)

    def _read(self, region: str, backup_id: str, name: str) -> bytes | None:
        return self._dest[region].read(f"{backup_id}/{name}")

    # ---- backup

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        for region in self.regions:
            if self._read(region, backup_id, MANIFEST) is not None:
                raise FailedPrecondition(f"backup {backup_id} exists already in {region}")
        futures: dict[int, Future[dict[str, PartEntry]]] = {}
        lock = threading.Lock()
        # Reading (one thread per top-level collection tree, or the one ordered pass)
        # and sealing/writing run side by side; a part's index is its manifest position.
        with ThreadPoolExecutor(max_workers=self._workers) as sealers:
            suffix = archive.part_suffix(self._schema_version)

            def submit(top: str, n: int, records: list[Any]) -> None:
                name = f"parts/{_file_safe(top)}-{n:05d}{suffix}"
                with lock:
                    index = len(futures)
                    futures[index] = sealers.submit(
                        self._seal_part, backup_id, index, name, records
                    )

            if self._reader == "grpc":
                census = self._read_trees(snapshot_time, submit, self._read_tree_pb)
            elif self._reader == "rest":
                census = self._read_trees(snapshot_time, submit, self._read_tree)
            else:
                census = self._read_one_pass(snapshot_time, submit)
            sealed = [futures[index].result() for index in sorted(futures)]
        meta_files = [n for n in BUNDLE_META_FILES if (self._meta_dir / n).is_file()]
        meta = [
            self._write_all(
                backup_id, index, f"meta/{name}.enc", (self._meta_dir / name).read_bytes(), 0
            )
            for index, name in enumerate(meta_files)
        ]
        sizes: list[int] = []
        document_count = 0
        for region in self.regions:
            manifest = Manifest(
                backup_id=backup_id,
                snapshot_time=iso_micro(snapshot_time),
                source_database=self._source.database_path,
                key_id=self._key.key_id,
                collection_counts=census.tops,
                group_counts=census.groups,
                parts=[entries[region] for entries in sealed],
                meta=[entries[region] for entries in meta],
                region=region,
                schema_version=self._schema_version,
            )
            body = manifest.to_bytes(self._key)
            self._dest[region].write(f"{backup_id}/{MANIFEST}", body)
            sizes.append(manifest.size_bytes + len(body))
            document_count = manifest.document_count
        return CreatedBackup(
            locations={r: self.location(r, backup_id) for r in self.regions},
            document_count=document_count,
            collection_counts=census.tops,
            size_bytes=max(sizes, default=0),
            key_id=self._key.key_id,
        )

    def _read_one_pass(self, snapshot_time: datetime, submit: _SubmitPart) -> Census:
        """The first reader (kept as the benchmark's baseline): one ordered pass over the
        kindless all-descendants query, at ``snapshot_time``."""
        excluded = set(collections.BACKUP_EXCLUDED)
        tops: dict[str, int] = {}
        groups: dict[str, int] = {}
        series: dict[str, int] = {}
        lines: list[bytes] = []
        current = ""

        def flush() -> None:
            nonlocal lines
            if lines:
                n = series.get(current, 0)
                series[current] = n + 1
                submit(current, n, lines)
                lines = []

        for page in self._source.pages(None, snapshot_time, self._part_docs):
            for doc in page:
                name = self._source.relative(doc["name"])
                path = name.split("/")
                if path[0] in excluded:
                    continue
                if path[0] != current or len(lines) >= self._part_docs:
                    flush()
                    current = path[0]
                line = {"name": name, "fields": doc.get("fields", {})}
                lines.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                tops[path[0]] = tops.get(path[0], 0) + 1
                groups[path[-2]] = groups.get(path[-2], 0) + 1
        flush()
        return Census(groups=groups, tops=tops)

    def _read_trees(
        self,
        snapshot_time: datetime,
        submit: _SubmitPart,
        read_tree: Callable[[str, datetime, _SubmitPart], Census],
    ) -> Census:
        """The parallel readers: the database split at top-level collection boundaries,
        every tree read by its own thread (``read_tree``: over gRPC or REST), all at the
        one ``snapshot_time``.

        Complete without listing subcollections: every document's path starts with
        exactly one top-level collection id; ``listCollectionIds`` at the snapshot's
        ``readTime`` names every top-level collection with a document at any depth
        under it; and each tree's ``__name__`` range (:meth:`FirestoreDocuments.
        _tree_bounds`) holds exactly the documents under its top-level collection. So
        the trees are disjoint and cover the database. Checked on every backup: one
        COUNT aggregation of the whole database at the same ``readTime`` (run beside
        the reads) must equal what was read plus the excluded bookkeeping trees."""
        excluded = set(collections.BACKUP_EXCLUDED)
        roots = self._source.root_collections(snapshot_time)
        tops = [t for t in roots if t not in excluded]
        skipped = [t for t in roots if t in excluded]
        with ThreadPoolExecutor(max_workers=self._readers) as readers:
            total = readers.submit(self._source.count, None, snapshot_time)
            trees = [readers.submit(read_tree, t, snapshot_time, submit) for t in tops]
            left_out = [readers.submit(self._source.count, None, snapshot_time, t) for t in skipped]
            census = Census(groups={}, tops={})
            for tree in trees:
                part = tree.result()
                census.tops.update(part.tops)
                for group, n in part.groups.items():
                    census.groups[group] = census.groups.get(group, 0) + n
            expected = total.result() - sum(f.result() for f in left_out)
        read = sum(census.tops.values())
        if read != expected:
            raise BackupIntegrityError(
                f"the backup read {read} documents but the database held {expected} "
                f"(outside the bookkeeping collections) at {iso_micro(snapshot_time)}"
            )
        return census

    def _read_tree(self, top: str, snapshot_time: datetime, submit: _SubmitPart) -> Census:
        """One top-level collection and everything under it, cut into parts."""
        groups: dict[str, int] = {}
        lines: list[bytes] = []
        count = 0
        series = 0
        for doc in self._source.stream(snapshot_time, within=top, page_size=self._read_page):
            name = self._source.relative(doc["name"])
            path = name.split("/")
            if path[0] != top:
                raise BackupIntegrityError(f"the read of the {top} tree returned {name}")
            line = {"name": name, "fields": doc.get("fields", {})}
            lines.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            groups[path[-2]] = groups.get(path[-2], 0) + 1
            count += 1
            if len(lines) >= self._part_docs:
                submit(top, series, lines)
                series += 1
                lines = []
        if lines:
            submit(top, series, lines)
        return Census(groups=groups, tops={top: count} if count else {})

    def _read_tree_pb(self, top: str, snapshot_time: datetime, submit: _SubmitPart) -> Census:
        """:meth:`_read_tree` over gRPC: the ``Document`` protobufs are kept as they
        arrive (serialised again in C, a part at a time, when sealed); the only work per
        document is counting it in its collection group."""
        prefix = len(self._source.documents_path) + 1
        own = f"{top}/"
        groups: dict[str, int] = {}
        docs: list[Any] = []
        count = 0
        series = 0
        for doc in self._source.stream_documents(
            snapshot_time, within=top, page_size=self._read_page
        ):
            name = doc.name[prefix:]
            if not name.startswith(own):
                raise BackupIntegrityError(f"the read of the {top} tree returned {name}")
            group = name.rsplit("/", 2)[-2]
            groups[group] = groups.get(group, 0) + 1
            docs.append(doc)
            if len(docs) >= self._part_docs:
                submit(top, series, docs)
                count += len(docs)
                series += 1
                docs = []
        if docs:
            submit(top, series, docs)
            count += len(docs)
        return Census(groups=groups, tops={top: count} if count else {})

    def _seal_part(
        self, backup_id: str, index: int, name: str, records: list[Any]
    ) -> dict[str, PartEntry]:
        if self._schema_version >= 3:
            plaintext = archive.encode_documents(records)
        else:
            plaintext = archive.encode_part(records)
        return self._write_all(backup_id, index, name, plaintext, len(records))

    def _write_all(
        self, backup_id: str, index: int, name: str, plaintext: bytes, documents: int
    ) -> dict[str, PartEntry]:
        """Seal ``plaintext`` once per region (each copy bound to its region) and write
        it; region -> the manifest entry."""
        entries: dict[str, PartEntry] = {}
        for region in self.regions:
            where = PartContext(backup_id, region, index, name, self._schema_version)
            sealed = archive.seal(self._key, where, plaintext)
            self._dest[region].write(f"{backup_id}/{name}", sealed)
            entries[region] = PartEntry(name, archive.sha256(sealed), documents, len(sealed))
        return entries

    # ---- read back

    def manifest(self, backup_id: str, region: str) -> Manifest:
        data = self._read(region, backup_id, MANIFEST)
        if data is None:
            raise BackupIntegrityError(
                f"backup {backup_id} in {region} has no manifest (incomplete)", part=MANIFEST
            )
        return Manifest.from_bytes(data, self._key, backup_id=backup_id, region=region)

    def _read_part(self, region: str, manifest: Manifest, entry: PartEntry) -> bytes:
        sealed = self._read(region, manifest.backup_id, entry.name)
        archive.check_part(entry, sealed)
        assert sealed is not None
        return archive.unseal(self._key, manifest.part_context(entry), sealed)

    def _documents(
        self, backup_id: str, region: str, manifest: Manifest
    ) -> Iterator[Sequence[Any]]:
        """Each part's documents, checked against the manifest's count: ``{"name",
        "fields"}`` dicts (schema versions 1 and 2) or ``Document`` protobufs (3)."""
        for entry in manifest.parts:
            plain = self._read_part(region, manifest, entry)
            docs: Sequence[Any]
            if manifest.schema_version >= 3:
                docs = archive.decode_documents(entry.name, plain)
            else:
                docs = archive.decode_part(entry.name, plain)
            if len(docs) != entry.documents:
                raise BackupIntegrityError(
                    f"part {entry.name} holds {len(docs)} documents, manifest says "
                    f"{entry.documents}",
                    part=entry.name,
                )
            yield docs

    def verify(self, record: BackupRecord, region: str) -> None:
        manifest = self.manifest(record.backup_id, region)
        total = sum(len(docs) for docs in self._documents(record.backup_id, region, manifest))
        for entry in manifest.meta:
            self._read_part(region, manifest, entry)
        if total != manifest.document_count:
            raise BackupIntegrityError(
                f"backup {record.backup_id} holds {total} documents, manifest says "
                f"{manifest.document_count}"
            )

    def bundle_file(self, backup_id: str, region: str, name: str) -> bytes:
        """A saved rules or index file, decrypted."""
        manifest = self.manifest(backup_id, region)
        for entry in manifest.meta:
            if entry.name == f"meta/{name}.enc":
                return self._read_part(region, manifest, entry)
        raise BackupIntegrityError(f"backup {backup_id} has no {name}", part=name)

    def restore(
        self,
        backup_id: str,
        region: str,
        target: FirestoreDocuments,
        *,
        overwrite: bool = False,
    ) -> RestoreResult:
        """Write the backup into ``target`` and check the counts there.

        Every part's SHA-256 is checked before the first write, so a damaged backup
        writes nothing; a non-empty target is refused unless ``overwrite``."""
        started = time.perf_counter()
        manifest = self.manifest(backup_id, region)
        for entry in manifest.parts:
            archive.check_part(entry, self._read(region, backup_id, entry.name))
        if not overwrite and not target.is_empty():
            raise NonEmptyTarget(
                f"the target {target.database_path} is not empty: restore into an empty "
                "database, or pass the overwrite flag",
                target=target.database_path,
            )
        if manifest.schema_version >= 3:
            written = self._write_documents(backup_id, region, manifest, target)
        else:
            written = self._write_json(backup_id, region, manifest, target)
        counts = {group: target.count(group) for group in manifest.group_counts}
        short = {g: n for g, n in counts.items() if n < manifest.group_counts[g]}
        if short or (not overwrite and counts != manifest.group_counts):
            raise BackupIntegrityError(
                f"restored counts {counts} differ from the manifest {manifest.group_counts}"
            )
        return RestoreResult(written, counts, time.perf_counter() - started)

    def _write_json(
        self, backup_id: str, region: str, manifest: Manifest, target: FirestoreDocuments
    ) -> int:
        """Restore NDJSON parts (schema versions 1 and 2) through REST commits."""
        old, new = manifest.source_database, target.database_path
        written = 0
        batch: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            pending = []
            for docs in self._documents(backup_id, region, manifest):
                for doc in docs:
                    fields = doc["fields"] if old == new else _rebase(doc["fields"], old, new)
                    name = f"{target.documents_path}/{doc['name']}"
                    batch.append({"update": {"name": name, "fields": fields}})
                    if len(batch) >= BACKUP_RESTORE_BATCH_DOCS_COUNT:
                        pending.append(pool.submit(target.commit, batch))
                        written += len(batch)
                        batch = []
            if batch:
                pending.append(pool.submit(target.commit, batch))
                written += len(batch)
            for future in pending:
                future.result()
        return written

    def _write_documents(
        self, backup_id: str, region: str, manifest: Manifest, target: FirestoreDocuments
    ) -> int:
        """Restore protobuf parts (schema version 3) through gRPC commits: each
        ``Document`` renamed into the target, its output-only times dropped, and its
        references rebased only when it holds one into the source database."""
        old_db, new_db = manifest.source_database, target.database_path
        old_docs = f"{old_db}/documents/"
        new_docs = f"{target.documents_path}/"
        cut = len(old_docs)
        needle = old_db.encode()
        rebase = old_db != new_db
        written = 0
        step = BACKUP_RESTORE_BATCH_DOCS_COUNT
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            pending: list[Future[None]] = []
            for docs in self._documents(backup_id, region, manifest):
                for doc in docs:
                    name = doc.name
                    if not name.startswith(old_docs):
                        raise BackupIntegrityError(
                            f"document {name} of backup {backup_id} is not in {old_db}"
                        )
                    doc.name = new_docs + name[cut:]
                    doc.ClearField("create_time")
                    doc.ClearField("update_time")
                    if rebase and needle in doc.SerializeToString():
                        for value in doc.fields.values():
                            _rebase_value(value, old_db, new_db)
                for start in range(0, len(docs), step):
                    chunk = docs[start : start + step]
                    pending.append(pool.submit(target.commit_documents, chunk))
                    written += len(chunk)
                # at most a few parts' batches in flight: memory stays bounded
                while len(pending) > 4 * self._workers * (BACKUP_PART_MAX_DOCS_COUNT // step):
                    pending.pop(0).result()
            for future in pending:
                future.result()
        return written

    def delete(self, record: BackupRecord) -> bool:
        for region in self.regions:
            self._dest[region].delete_tree(record.backup_id)
        return True

    def pitr_state(self) -> PitrState:
        if self._pitr is None:
            return PitrState(supported=False, enabled=False)
        return self._pitr.pitr_state()

    def drill(
        self, record: BackupRecord | None, point_in_time: datetime | None, region: str, tag: str
    ) -> DrillOutcome:
        if point_in_time is not None or record is None:
            raise FailedPrecondition(
                "the logical backend restores backups, not points in time (that needs PITR "
                "and the managed backend)",
                field="pointInTime",
            )
        target = self._source.with_database(self._drill_database)
        if not target.is_empty():
            raise NonEmptyTarget(
                f"the drill database {target.database_path} is not empty: it is not ours to empty",
                target=target.database_path,
            )
        started = time.perf_counter()
        counted = 0
        failure: str | None = None
        cleanup = "not run"
        cleaned = False
        try:
            result = self.restore(record.backup_id, region, target)
            # the documents the target really holds, counted there after the restore
            counted = sum(result.group_counts.values())
        except Exception as exc:  # recorded in the drill, never lost
            failure = describe_error(exc)
        finally:
            duration = time.perf_counter() - started
            cleaned, cleanup = _empty_scratch(target)
        ok = failure is None and counted == record.document_count
        detail = (
            f"restore failed: {failure}"
            if failure is not None
            else f"restored and counted {counted} documents "
            f"({'matches' if ok else 'differs from'} the catalog's {record.document_count})"
        )
        return DrillOutcome(
            target=target.database_path,
            ok=ok,
            documents=counted,
            duration_sec=duration,
            cleaned_up=cleaned,
            detail=f"{detail}; cleanup: {cleanup}",
        )


def describe_error(exc: BaseException) -> str:
    """An error for a report or a drill: our own errors' message, or the type and text
    of anything else (a Google API error's text carries its HTTP status)."""
    if isinstance(exc, Pack391Error):
        return exc.message
    return f"{type(exc).__name__}: {exc}"[:500]


def _empty_scratch(target: FirestoreDocuments) -> tuple[bool, str]:
    """Remove every document of a drill's scratch database: (empty afterwards, what
    happened). Never raises: a failed cleanup is recorded, not hidden."""
    try:
        deleted = target.delete_everything()
        empty = target.is_empty()
    except Exception as exc:
        return False, f"failed: {describe_error(exc)}"
    return empty, f"{deleted} documents removed" + ("" if empty else ", but some remain")


def _file_safe(group: str) -> str:
    """A collection id as a file name: itself when plain, else a digest."""
    if group.replace("_", "").replace("-", "").isalnum() and group.isascii():
        return group
    return "x" + archive.sha256(group.encode())[:16]


# ------------------------------------------------------------- managed


class PitrInspector:
    """Reads point-in-time recovery settings from the database (Admin API)."""

    def __init__(self, admin: FirestoreAdminClient, database_path: str) -> None:
        self._admin = admin
        self._database_path = database_path

    def pitr_state(self) -> PitrState:
        db = self._admin.get_database(name=self._database_path)
        enabled = (
            db.point_in_time_recovery_enablement
            == Database.PointInTimeRecoveryEnablement.POINT_IN_TIME_RECOVERY_ENABLED
        )
        retention = db.version_retention_period
        earliest = db.earliest_version_time
        return PitrState(
            supported=True,
            enabled=enabled,
            retention_sec=retention.total_seconds() if retention else None,
            earliest_version_time=earliest if earliest and earliest.year > 1970 else None,
        )


class ManagedBackupStore:
    """Firestore managed exports into one bucket per region; drills clone from PITR."""

    backend = BackupBackend.MANAGED

    def __init__(
        self,
        admin: FirestoreAdminClient,
        project: str,
        buckets: Mapping[str, str],
        *,
        database: str = "(default)",
        kms_key: str | None = None,
        timeout_sec: float = _OPERATION_TIMEOUT_SEC,
        documents: FirestoreDocuments | None = None,
    ) -> None:
        """``documents``: the data API, to count a drill's clone (default: this project's
        Firestore, the emulator when ``FIRESTORE_EMULATOR_HOST`` is set)."""
        self._admin = admin
        self._project = project
        self._documents = documents
        self._database_path = f"projects/{project}/databases/{database}"
        self._buckets = {region: uri.rstrip("/") for region, uri in buckets.items()}
        self.regions: Sequence[str] = tuple(self._buckets)
        self._kms_key = kms_key or None
        self._timeout = timeout_sec
        self._pitr = PitrInspector(admin, self._database_path)

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        locations: dict[str, str] = {}
        operations: dict[str, str] = {}
        documents = 0
        size = 0
        for region, bucket in self._buckets.items():
            prefix = f"{bucket}/{backup_id}"
            operation = self._admin.export_documents(
                request=ExportDocumentsRequest(
                    name=self._database_path,
                    output_uri_prefix=prefix,
                    snapshot_time=snapshot_time,
                )
            )
            operation.result(timeout=self._timeout)  # type: ignore[no-untyped-call]
            meta = operation.metadata
            if isinstance(meta, ExportDocumentsMetadata):
                documents = int(meta.progress_documents.completed_work)
                size = int(meta.progress_bytes.completed_work)
            locations[region] = prefix
            operations[region] = operation.operation.name
        return CreatedBackup(
            locations=locations,
            document_count=documents,
            collection_counts={},
            size_bytes=size,
            key_id=self._kms_key,
            operations=operations,
        )

    def verify(self, record: BackupRecord, region: str) -> None:
        name = record.operations.get(region)
        if not name:
            raise BackupIntegrityError(f"backup {record.backup_id} has no export in {region}")
        operation = self._admin.get_operation(operations_pb2.GetOperationRequest(name=name))
        if not operation.done:
            raise BackupIntegrityError(f"export {name} has not finished")
        if operation.HasField("error"):
            raise BackupIntegrityError(f"export {name} failed: {operation.error.message}")
        meta = ExportDocumentsMetadata.deserialize(operation.metadata.value)
        if meta.operation_state != OperationState.SUCCESSFUL:
            raise BackupIntegrityError(
                f"export {name} is {OperationState(meta.operation_state).name}"
            )

    def delete(self, record: BackupRecord) -> bool:
        # Exports are deleted by each bucket's lifecycle rule (age = retention days):
        # the functions' service account needs no delete right on cold storage.
        return False

    def pitr_state(self) -> PitrState:
        return self._pitr.pitr_state()

    def drill(
        self, record: BackupRecord | None, point_in_time: datetime | None, region: str, tag: str
    ) -> DrillOutcome:
        moment = point_in_time or (record.snapshot_time if record else None)
        if moment is None:
            raise FailedPrecondition("no backup and no point in time to restore")
        moment = align_down(moment, BACKUP_SNAPSHOT_ALIGN_SEC)
        target_id = f"drill-{tag}"
        target = f"projects/{self._project}/databases/{target_id}"
        started = time.perf_counter()
        try:
            operation = self._admin.clone_database(
                request=CloneDatabaseRequest(
                    parent=f"projects/{self._project}",
                    database_id=target_id,
                    pitr_snapshot=PitrSnapshot(database=self._database_path, snapshot_time=moment),
                )
            )
        except gexc.BadRequest as exc:  # InvalidArgument, FailedPrecondition, ... (HTTP 400)
            # outside what the database really keeps (without PITR: the last hour only)
            raise InvalidInput(
                "pointInTime" if point_in_time is not None else "backupId",
                f"Firestore cannot clone the database at {iso(moment)}: {exc.message}",
            ) from exc
        # From here on a clone may exist: whatever happens, it is deleted (finally), and
        # the drill records what the cleanup really did.
        counted = 0
        failure: str | None = None
        cleaned, cleanup = False, "not run"
        try:
            operation.result(timeout=self._timeout)  # type: ignore[no-untyped-call]
            clone = self._admin.get_database(name=target)
            if clone.name != target or not clone.uid:
                raise FailedPrecondition(f"the clone {target} is not ready")
            documents = self._documents or FirestoreDocuments.for_environment(self._project)
            counted = documents.with_database(target_id).count(None)
        except Exception as exc:  # recorded in the drill, never lost
            failure = describe_error(exc)
        finally:
            duration = time.perf_counter() - started
            cleaned, cleanup = self._drop_clone(operation, target)
        expected = record.document_count if record is not None and point_in_time is None else None
        ok = failure is None and (expected is None or counted == expected)
        if failure is not None:
            detail = f"clone of {self._database_path} at {iso(moment)} failed: {failure}"
        else:
            detail = (
                f"cloned {self._database_path} at {iso(moment)} into {target_id}, "
                f"counted {counted} documents"
                + (
                    f" ({'matches' if ok else 'differs from'} the backup's {expected})"
                    if expected is not None
                    else ""
                )
            )
        return DrillOutcome(
            target=target,
            ok=ok,
            documents=counted,
            duration_sec=duration,
            cleaned_up=cleaned,
            detail=f"{detail}; cleanup: {cleanup}",
        )

    def _drop_clone(self, operation: Any, target: str) -> tuple[bool, str]:
        """Cancel the clone if it is still running, delete the database, and check it is
        gone: (gone, what happened). Never raises."""
        steps: list[str] = []
        try:
            if not operation.done():
                operation.cancel()
                steps.append("clone operation cancelled")
        except Exception as exc:
            steps.append(f"cancel failed: {describe_error(exc)}")
        try:
            self._admin.delete_database(name=target).result(timeout=self._timeout)  # type: ignore[no-untyped-call]
            steps.append(f"deleted {target}")
        except gexc.NotFound:
            steps.append(f"{target} did not exist")
        except Exception as exc:
            steps.append(f"delete failed: {describe_error(exc)}")
        try:
            self._admin.get_database(name=target)
        except gexc.NotFound:
            return True, ", ".join(steps)
        except Exception as exc:
            steps.append(f"could not confirm: {describe_error(exc)}")
            return False, ", ".join(steps)
        return False, ", ".join([*steps, f"{target} still exists"])


# ------------------------------------------------------------- catalog


class BackupCatalog:
    """Firestore: the catalog, verification reports, alerts and drills."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def _ref(self, backup_id: str) -> firestore.DocumentReference:
        return self._db.collection(collections.BACKUPS).document(backup_id)

    def save(self, record: BackupRecord) -> None:
        self._ref(record.backup_id).set(record.to_doc())

    def get(self, backup_id: str) -> BackupRecord | None:
        snap = self._ref(backup_id).get()
        return BackupRecord.model_validate(snap.to_dict()) if snap.exists else None

    def all(self) -> list[BackupRecord]:
        docs = self._db.collection(collections.BACKUPS).order_by("__name__").stream()
        return [BackupRecord.model_validate(snap.to_dict()) for snap in docs]

    def save_verification(self, report: VerificationReport, alert: BackupAlert | None) -> None:
        batch = self._db.batch()
        ref = self._db.collection(collections.BACKUP_VERIFICATIONS).document(report.verification_id)
        batch.set(ref, report.to_doc())
        if alert is not None:
            batch.set(self._db.collection(collections.BACKUP_ALERTS).document(), alert.to_doc())
            # ... and the shared alert every area raises, which the ops dashboard shows
            shared = AlertDoc(
                source="backup",
                kind=alert.kind,
                severity=Severity.HIGH,
                title=f"Backups: {len(alert.problems)} promise(s) broken",
                evidence={"verificationId": alert.verification_id, "problems": alert.problems},
                opened_at=alert.at,
            )
            alert_ref = self._db.collection(collections.ALERTS).document(
                f"backup_{alert.verification_id}"
            )
            batch.set(alert_ref, shared.to_doc())
        batch.commit()

    def _newest(self, collection: str) -> dict[str, Any] | None:
        query = (
            self._db.collection(collection)
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snap in query.stream():
            return snap.to_dict()
        return None

    def last_verification(self) -> VerificationReport | None:
        doc = self._newest(collections.BACKUP_VERIFICATIONS)
        return VerificationReport.model_validate(doc) if doc is not None else None

    def save_drill(self, drill: DrillRecord, change: Change) -> None:
        """The drill and its audit entry, in one batch."""
        batch = self._db.batch()
        ref = self._db.collection(collections.BACKUP_DRILLS).document(drill.drill_id)
        batch.set(ref, drill.to_doc())
        write_audit(
            self._db,
            batch,
            change,
            target=f"{collections.BACKUP_DRILLS}/{drill.drill_id}",
            before=None,
            after=drill.model_dump(mode="json", by_alias=True),
        )
        batch.commit()

    def last_drill(self) -> DrillRecord | None:
        doc = self._newest(collections.BACKUP_DRILLS)
        return DrillRecord.model_validate(doc) if doc is not None else None


def mark(record: BackupRecord, status: BackupStatus, **changes: Any) -> BackupRecord:
    return record.model_copy(update={"status": status, **changes})


# ------------------------------------------------------------- wiring


def parse_destinations(text: str, param: str) -> dict[str, str]:
    """``region=dest,region=dest`` -> mapping; every region named once, known regions only."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        region, sep, dest = item.partition("=")
        region, dest = region.strip(), dest.strip()
        if not sep or not dest or region not in BACKUP_REGIONS or region in found:
            raise FailedPrecondition(
                f"{param}: {item!r} is not region=destination with a region of "
                f"{', '.join(BACKUP_REGIONS)} (each once)"
            )
        found[region] = dest
    return found


def backup_destinations(root: str, overrides: str) -> dict[str, str]:
    """One destination per region: ``root/<region>`` unless overridden by a directory
    or a ``gs://bucket/prefix``."""
    chosen = parse_destinations(overrides, "PACK391_BACKUP_DESTINATIONS")
    base = Path(root) if Path(root).is_absolute() else SOURCE_DIR / root
    dirs: dict[str, str] = {}
    for region in BACKUP_REGIONS:
        dest = chosen.get(region) or str(base / region)
        if not dest.startswith("gs://") and not Path(dest).is_absolute():
            dest = str(SOURCE_DIR / dest)
        dirs[region] = dest
    return dirs


DEV_KEY_FILE = SOURCE_DIR / ".local" / "backup-dev.key"
"""Local stack only: generated once when ``PACK391_BACKUP_KEY`` is unset. Never beside
the backups (which live under ``.local/backups/<region>``) and never deployed."""


def backup_key(secret_b64: str, emulated: bool, dev_key_file: Path = DEV_KEY_FILE) -> BackupKey:
    """The configured key; under the emulator, a generated development key."""
    if secret_b64.strip():
        return BackupKey.from_base64(secret_b64)
    if not emulated:
        raise FailedPrecondition(
            "PACK391_BACKUP_KEY is not set: create a secret of 32 random bytes in base64"
        )
    if not dev_key_file.is_file():
        dev_key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dev_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(archive.KEY_BYTES)).decode() + "\n")
    return BackupKey.from_base64(dev_key_file.read_text())


def admin_client(endpoint: str | None = None) -> FirestoreAdminClient:
    """The Firestore Admin API client (REST); ``endpoint`` points it elsewhere (tests)."""
    if endpoint is None:
        return FirestoreAdminClient(transport="rest")
    from google.auth.credentials import AnonymousCredentials

    return FirestoreAdminClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def configured_store(project: str) -> BackupStore:
    """The backend the params choose (``auto``: managed when deployed, logical locally)."""
    emulated = is_emulated()
    choice = BACKUP_BACKEND.value.strip().lower() or "auto"
    if choice == "auto":
        choice = "logical" if emulated else "managed"
    if choice == BackupBackend.MANAGED.value:
        buckets = parse_destinations(BACKUP_BUCKETS.value, "PACK391_BACKUP_BUCKETS")
        missing = [r for r in BACKUP_REGIONS if r not in buckets]
        if missing:
            raise FailedPrecondition(f"PACK391_BACKUP_BUCKETS has no bucket for {missing}")
        return ManagedBackupStore(
            admin_client(), project, buckets, kms_key=BACKUP_KMS_KEY.value or None
        )
    if choice != BackupBackend.LOGICAL.value:
        raise FailedPrecondition(f"PACK391_BACKUP_BACKEND={choice!r}: use managed or logical")
    source = FirestoreDocuments.for_environment(project)
    pitr = None if emulated else PitrInspector(admin_client(), source.database_path)
    return LogicalBackupStore(
        source,
        backup_key(BACKUP_KEY.value, emulated),
        {
            region: destination_for(dest)
            for region, dest in backup_destinations(
                BACKUP_LOCAL_ROOT.value, BACKUP_DESTINATIONS.value
            ).items()
        },
        drill_database=BACKUP_DRILL_DATABASE.value,
        pitr=pitr,
    )
