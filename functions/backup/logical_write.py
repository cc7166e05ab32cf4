"""The logical backend's write path: every document streamed at one ``readTime`` (the
top-level collection trees read in parallel over gRPC by default), cut into parts,
sealed once per region (each copy bound to its region) and written, then the manifest
of each region's copy."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from functions.backup import archive
from functions.backup.archive import BackupIntegrityError, Manifest, PartContext, PartEntry
from functions.backup.logical_read import MANIFEST, LogicalReader
from functions.backup.policy import iso_micro
from functions.backup.ports import CreatedBackup, Documents
from shared import collections
from shared.errors import FailedPrecondition
from shared.thresholds import BACKUP_PART_MAX_DOCS_COUNT, BACKUP_READ_PAGE_DOCS_COUNT

BUNDLE_META_FILES = ("firestore.rules", "firestore.indexes.json")
"""Saved with every logical backup."""

BACKUP_READ_THREADS_COUNT = 4
"""Top-level collection trees a logical backup reads at once (measured in
docs/benchmarks.md: more threads than trees, or than the server's cores, add nothing)."""

READERS = ("grpc", "rest", "one-pass")
"""The logical backup's readers: ``grpc`` (the default: the top-level collection trees
read in parallel over gRPC, parts of ``Document`` protobufs, schema version 3);
``rest`` (the same trees over REST, NDJSON parts, version 2) and ``one-pass`` (one
ordered REST pass, version 2): the benchmark's baselines."""

_SubmitPart = Callable[[str, int, list[Any]], None]
"""Hand a part's records (NDJSON lines, or ``Document`` protobufs for the gRPC reader),
with its top-level collection and number in its series, to sealing."""


@dataclass(frozen=True)
class Census:
    """What a backup read: documents by collection group and by top-level collection."""

    groups: dict[str, int]
    tops: dict[str, int]


class LogicalWriter:
    """Takes a logical backup into every region's destination."""

    def __init__(
        self,
        source: Documents,
        copies: LogicalReader,
        meta_dir: Path,
        *,
        workers: int = 2,
        readers: int = BACKUP_READ_THREADS_COUNT,
        reader: str = "grpc",
        part_docs: int = BACKUP_PART_MAX_DOCS_COUNT,
        read_page: int = BACKUP_READ_PAGE_DOCS_COUNT,
    ) -> None:
        """``workers`` seal and write parts; ``readers`` read top-level collection trees
        at once; ``reader`` is one of :data:`READERS` (the REST ones are the benchmark's
        baselines)."""
        if reader not in READERS:
            raise ValueError(f"reader {reader!r} is not one of {READERS}")
        self._source = source
        self._copies = copies
        self._meta_dir = meta_dir
        self._workers = workers
        self._readers = readers
        self._reader = reader
        self.schema_version = (
            archive.SCHEMA_VERSION if reader == "grpc" else archive.JSON_SCHEMA_VERSION
        )
        self._part_docs = part_docs
        self._read_page = read_page

    def create(self, backup_id: str, snapshot_time: datetime) -> CreatedBackup:
        for region in self._copies.regions:
            if self._copies.read(region, backup_id, MANIFEST) is not None:
                raise FailedPrecondition(f"backup {backup_id} exists already in {region}")
        futures: dict[int, Future[dict[str, PartEntry]]] = {}
        lock = threading.Lock()
        # Reading (one thread per top-level collection tree, or the one ordered pass)
        # and sealing/writing run side by side; a part's index is its manifest position.
        with ThreadPoolExecutor(max_workers=self._workers) as sealers:
            suffix = archive.part_suffix(self.schema_version)

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
        for region in self._copies.regions:
            manifest = Manifest(
                backup_id=backup_id,
                snapshot_time=iso_micro(snapshot_time),
                source_database=self._source.database_path,
                key_id=self._copies.key.key_id,
                collection_counts=census.tops,
                group_counts=census.groups,
                parts=[entries[region] for entries in sealed],
                meta=[entries[region] for entries in meta],
                region=region,
                schema_version=self.schema_version,
            )
            body = manifest.to_bytes(self._copies.key)
            self._copies.destinations[region].write(f"{backup_id}/{MANIFEST}", body)
            sizes.append(manifest.size_bytes + len(body))
            document_count = manifest.document_count
        return CreatedBackup(
            locations={r: self._copies.location(r, backup_id) for r in self._copies.regions},
            document_count=document_count,
            collection_counts=census.tops,
            size_bytes=max(sizes, default=0),
            key_id=self._copies.key.key_id,
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
        under it; and each tree's ``__name__`` range (:meth:`Documents.
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
        if self.schema_version >= 3:
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
        for region in self._copies.regions:
            where = PartContext(backup_id, region, index, name, self.schema_version)
            sealed = archive.seal(self._copies.key, where, plaintext)
            self._copies.destinations[region].write(f"{backup_id}/{name}", sealed)
            entries[region] = PartEntry(name, archive.sha256(sealed), documents, len(sealed))
        return entries


def _file_safe(group: str) -> str:
    """A collection id as a file name: itself when plain, else a digest."""
    if group.replace("_", "").replace("-", "").isalnum() and group.isascii():
        return group
    return "x" + archive.sha256(group.encode())[:16]
