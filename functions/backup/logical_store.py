"""The logical backend: every document streamed through Firestore's gRPC API (any
Firestore, the emulator included) at one ``readTime``, as the raw ``Document``
protobufs, into encrypted parts (see :mod:`functions.backup.archive`) written to one
destination per region (a directory or a ``gs://`` prefix,
:mod:`functions.backup.destinations`). The REST readers that came before it are kept
as the benchmark's baselines (and their backups are still restored)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from functions.backup import archive
from functions.backup.archive import (
    BackupIntegrityError,
    BackupKey,
    Manifest,
    PartContext,
    PartEntry,
)
from functions.backup.destinations import BackupDestination, LocalDirectory
from functions.backup.documents import BACKUP_READ_PAGE_DOCS_COUNT, FirestoreDocuments, iso_micro
from functions.backup.managed_store import PitrInspector
from functions.backup.policy import PitrState, describe_error
from functions.backup.ports import CreatedBackup, DrillOutcome
from shared import collections
from shared.errors import FailedPrecondition
from shared.models.backup import BackupBackend, BackupRecord
from shared.thresholds import BACKUP_PART_MAX_DOCS_COUNT, BACKUP_RESTORE_BATCH_DOCS_COUNT

SOURCE_DIR = Path(__file__).resolve().parent.parent.parent
"""The deployed bundle's source directory (firestore.rules and the index file are there)."""

BUNDLE_META_FILES = ("firestore.rules", "firestore.indexes.json")
"""Saved with every logical backup."""

MANIFEST = "manifest.json"

BACKUP_READ_THREADS_COUNT = 4
"""Top-level collection trees a logical backup reads at once (measured in
docs/benchmarks.md: more threads than trees, or than the server's cores, add nothing)."""


class NonEmptyTarget(FailedPrecondition):
    """A restore refused to write into a database that already holds documents."""


_SubmitPart = Callable[[str, int, list[Any]], None]
"""Hand a part's records (NDJSON lines, or ``Document`` protobufs for the gRPC reader),
with its top-level collection and number in its series, to sealing."""


@dataclass(frozen=True)
class Census:
    """What a backup read: documents by collection group and by top-level collection."""

    groups: dict[str, int]
    tops: dict[str, int]


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

    @property
    def exports(self) -> None:
        """None: a logical backup is taken whole by :meth:`create`, inside the hourly
        function."""
        return None

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
