"""The logical backend against the Firestore emulator: exact round trips, and failing
safely on tampering, wrong keys, interruptions and non-empty targets."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore_v1.types import document as document_types
from google.protobuf import json_format

from functions.backup.archive import BackupIntegrityError, BackupKey, WrongKey
from functions.backup.documents import FirestoreDocuments, json_array_items
from functions.backup.logical import LogicalBackupStore
from functions.backup.logical_read import MANIFEST
from functions.backup.logical_restore import NonEmptyTarget
from shared import collections
from shared.firestore import get_db
from shared.models.backup import BackupBackend, BackupRecord, BackupStatus
from shared.thresholds import BACKUP_REGIONS
from stack.sdk_private import client_of
from tests.backup.conftest import WHEN, new_key

_Document = document_types.Document.pb()


def now() -> datetime:
    return datetime.now(UTC)


def record_of(backup_id: str, count: int) -> BackupRecord:
    return BackupRecord(
        backup_id=backup_id,
        backend=BackupBackend.LOGICAL,
        status=BackupStatus.COMPLETE,
        snapshot_time=now(),
        started_at=now(),
        document_count=count,
    )


def all_docs(docs: FirestoreDocuments) -> dict[str, Any]:
    prefix = len(docs.documents_path) + 1
    return {
        d["name"][prefix:]: d.get("fields", {}) for page in docs.pages(None, None) for d in page
    }


def test_round_trip_every_value_type_and_subcollections(
    store: LogicalBackupStore, source: FirestoreDocuments, seeded: int
) -> None:
    created = store.create("20260101T000000Z-aaaaaa", now())
    assert created.document_count == seeded
    assert created.collection_counts == {"orders": 10, "settings": 1, "users": 15}
    target = source.with_database("restored")
    result = store.restore("20260101T000000Z-aaaaaa", "europe-west1", target)
    assert result.documents == seeded
    assert result.group_counts == {
        "users": 3,
        "posts": 6,
        "comments": 6,
        "orders": 10,
        "settings": 1,
    }

    # Typed JSON identical, references rebased to the target database.
    before = json.dumps(all_docs(source), sort_keys=True)
    after = json.dumps(all_docs(target), sort_keys=True)
    assert after == before.replace(source.database_path, target.database_path)
    assert source.database_path not in after

    # And through the Python client: the values come back as the same Python values.
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    restored = firestore.Client(project=source.project, database="restored", credentials=anonymous)
    original = get_db().document("users/u1").get().to_dict() or {}
    copy = restored.document("users/u1").get().to_dict() or {}
    # Firestore keeps microseconds: the stored value, whatever it is, comes back as is.
    assert copy["timestamp"] == original["timestamp"] == WHEN.replace(microsecond=123456)
    assert copy["timestamp"].nanosecond == original["timestamp"].nanosecond
    assert copy["ref"].path == "users/u2/posts/p1"
    assert client_of(copy["ref"]) is restored
    assert math.isnan(copy["nan"]) and copy["inf"] == float("-inf")
    assert copy["bytes"] == b"\x00\xff\x10binary"
    assert (copy["geo"].latitude, copy["geo"].longitude) == (-33.8688, 151.2093)
    for name in ("null", "int", "negative", "double", "string", "map", "empty_map", "empty"):
        assert copy[name] == original[name], name
    assert isinstance(copy["double"], float) and isinstance(copy["int"], int)


def test_three_region_copies_with_manifest_and_bundle_files(
    store: LogicalBackupStore, region_dirs: dict[str, Path], seeded: int
) -> None:
    created = store.create("20260101T000000Z-bbbbbb", now())
    assert set(created.locations) == set(BACKUP_REGIONS)
    listings = []
    for region in BACKUP_REGIONS:
        copy = region_dirs[region] / "20260101T000000Z-bbbbbb"
        assert (copy / MANIFEST).is_file()
        listings.append(sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*.enc")))
        manifest = store.manifest("20260101T000000Z-bbbbbb", region)
        assert manifest.document_count == seeded
        assert all(len(p.sha256) == 64 for p in manifest.parts)
        store.verify(record_of("20260101T000000Z-bbbbbb", seeded), region)
    assert listings[0] == listings[1] == listings[2]
    assert "meta/firestore.rules.enc" in listings[0]
    rules = store.bundle_file("20260101T000000Z-bbbbbb", "asia-northeast1", "firestore.rules")
    assert rules == b"rules_version = '2'; // test bundle\n"
    # Encrypted at rest: no plaintext document content in any file.
    blob = b"".join(p.read_bytes() for p in region_dirs["us-central1"].rglob("*.enc"))
    assert b"user 1" not in blob and b"rules_version" not in blob


def test_backup_reads_one_snapshot_and_skips_its_own_bookkeeping(
    store: LogicalBackupStore, seeded: int
) -> None:
    snapshot = now()
    db = get_db()
    db.document("orders/late").set({"total": 1})
    db.collection(collections.BACKUPS).document("x").set({"status": "complete"})
    created = store.create("20260101T000000Z-cccccc", snapshot)
    assert created.document_count == seeded
    assert collections.BACKUPS not in created.collection_counts


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_part_fails_verify_and_restore_naming_the_part(
    store: LogicalBackupStore,
    source: FirestoreDocuments,
    region_dirs: dict[str, Path],
    seeded: int,
) -> None:
    store.create("20260101T000000Z-dddddd", now())
    part = region_dirs["europe-west1"] / "20260101T000000Z-dddddd/parts/orders-00000.pb.gz.enc"
    _flip_byte(part)
    record = record_of("20260101T000000Z-dddddd", seeded)
    with pytest.raises(BackupIntegrityError, match="orders-00000") as err:
        store.verify(record, "europe-west1")
    assert err.value.part == "parts/orders-00000.pb.gz.enc"
    store.verify(record, "us-central1")  # the other copies are intact
    target = source.with_database("tampered")
    with pytest.raises(BackupIntegrityError, match="orders-00000"):
        store.restore("20260101T000000Z-dddddd", "europe-west1", target)
    assert target.is_empty()  # hashes are checked before the first write


def test_rehashed_part_still_fails_its_authentication_tag(
    store: LogicalBackupStore, region_dirs: dict[str, Path], seeded: int
) -> None:
    store.create("20260101T000000Z-eeeeee", now())
    copy = region_dirs["us-central1"] / "20260101T000000Z-eeeeee"
    part = copy / "parts/users-00000.pb.gz.enc"
    _flip_byte(part)
    manifest = json.loads((copy / MANIFEST).read_text())
    import hashlib

    for entry in manifest["parts"]:
        if entry["name"] == "parts/users-00000.pb.gz.enc":
            entry["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BackupIntegrityError, match=r"manifest.json failed authentication"):
        store.verify(record_of("20260101T000000Z-eeeeee", seeded), "us-central1")


def test_swapped_parts_fail_authentication(
    store: LogicalBackupStore, region_dirs: dict[str, Path], backends: Any
) -> None:
    db = get_db()
    for i in range(3):
        db.document(f"a/{i}").set({"i": i})
        db.document(f"b/{i}").set({"i": i})
    store.create("20260101T000000Z-ffffff", now())
    parts = region_dirs["asia-northeast1"] / "20260101T000000Z-ffffff/parts"
    a, b = parts / "a-00000.pb.gz.enc", parts / "b-00000.pb.gz.enc"
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    # the trees are read in parallel: whichever part the manifest lists first is named
    with pytest.raises(BackupIntegrityError, match=r"parts/[ab]-00000"):
        store.verify(record_of("20260101T000000Z-ffffff", 6), "asia-northeast1")


def test_wrong_key_fails_cleanly(
    store: LogicalBackupStore,
    source: FirestoreDocuments,
    region_dirs: dict[str, Path],
    seeded: int,
) -> None:
    store.create("20260101T000000Z-abcdef", now())
    other = LogicalBackupStore(source, BackupKey.from_base64(new_key()), region_dirs)
    with pytest.raises(WrongKey, match="sealed with key"):
        other.verify(record_of("20260101T000000Z-abcdef", seeded), "us-central1")
    target = source.with_database("wrongkey")
    with pytest.raises(WrongKey):
        other.restore("20260101T000000Z-abcdef", "us-central1", target)
    assert target.is_empty()


def test_interrupted_backup_leaves_no_manifest(
    source: FirestoreDocuments,
    key: BackupKey,
    region_dirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    seeded: int,
) -> None:
    streamed = source.stream_documents

    def drops_after_twelve(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, doc in enumerate(streamed(*args, **kwargs)):
            if n == 12:  # two parts of five are on their way to the sealers
                raise ConnectionError("connection lost mid-backup")
            yield doc

    monkeypatch.setattr(source, "stream_documents", drops_after_twelve)
    store = LogicalBackupStore(
        source, key, region_dirs, workers=1, readers=1, part_docs=5, read_page=5
    )
    with pytest.raises(ConnectionError, match="mid-backup"):
        store.create("20260101T000000Z-123456", now())
    for region in BACKUP_REGIONS:
        copy = region_dirs[region] / "20260101T000000Z-123456"
        assert any(copy.rglob("*.enc")), "some parts were written before the crash"
        assert not (copy / MANIFEST).exists()
        with pytest.raises(BackupIntegrityError, match="no manifest"):
            store.manifest("20260101T000000Z-123456", region)


def test_restore_refuses_a_non_empty_target_unless_told(
    store: LogicalBackupStore, source: FirestoreDocuments, seeded: int
) -> None:
    store.create("20260101T000000Z-654321", now())
    with pytest.raises(NonEmptyTarget, match="not empty"):
        store.restore("20260101T000000Z-654321", "us-central1", source)
    get_db().document("orders/o01").set({"total": -1})
    get_db().document("orders/extra").delete()
    result = store.restore("20260101T000000Z-654321", "us-central1", source, overwrite=True)
    assert result.documents == seeded
    assert (get_db().document("orders/o01").get().to_dict() or {})["total"] == 1.5


def test_drill_restores_checks_and_cleans_up(
    store: LogicalBackupStore, source: FirestoreDocuments, seeded: int
) -> None:
    store.create("20260101T000000Z-777777", now())
    outcome = store.drill(record_of("20260101T000000Z-777777", seeded), None, "us-central1", "t1")
    assert outcome.ok and outcome.cleaned_up and outcome.documents == seeded
    assert outcome.duration_sec > 0
    assert source.with_database("drill-t").is_empty()


def test_point_in_time_needs_the_managed_backend(store: LogicalBackupStore, seeded: int) -> None:
    from shared.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="points in time"):
        store.drill(None, now() - timedelta(minutes=5), "us-central1", "t2")


def _backed_up(store: LogicalBackupStore, backup_id: str) -> dict[str, str]:
    """Relative name -> the document's fields as canonical JSON, whatever the format:
    typed JSON (versions 1 and 2) is parsed into the ``Document`` protobuf the gRPC
    reader keeps (version 3), so both compare value for value."""
    manifest = store.manifest(backup_id, "us-central1")
    prefix = len(manifest.source_database) + len("/documents/")
    found: dict[str, str] = {}
    for page in store.copies.documents(backup_id, "us-central1", manifest):
        for d in page:
            if isinstance(d, dict):
                name, doc = d["name"], json_format.ParseDict({"fields": d["fields"]}, _Document())
            else:
                name, doc = d.name[prefix:], d
            found[name] = json.dumps(
                json_format.MessageToDict(doc)["fields"] if doc.fields else {}, sort_keys=True
            )
    return found


@pytest.mark.parametrize("old_reader", ["one-pass", "rest"])
def test_grpc_reader_reads_what_the_rest_readers_read_at_one_time(
    source: FirestoreDocuments,
    key: BackupKey,
    region_dirs: dict[str, Path],
    seeded: int,
    old_reader: str,
) -> None:
    """The trees of the top-level collections, read over gRPC by several threads, hold
    the same documents with the same values as the REST readers (the one ordered pass,
    and the parallel REST reader): subcollections at any depth, a collection whose only
    documents are in a subcollection, ids that are prefixes of one another, every value
    type, and nothing written or deleted after the snapshot. Both formats restore."""
    db = get_db()
    db.document("ghost/missing-parent/sub/s1").set({"x": 1})  # no ghost document itself
    db.document("user/u9").set({"prefix of": "users"})
    db.document("users_archive/a/b/c/d/e").set({"deep": True})
    db.document("zażółć/ü").set({"unicode": True})
    db.document(f"{collections.BACKUPS}/x/child/y").set({"bookkeeping": True})
    db.document("gone/g1").set({"deleted after the snapshot": True})
    snapshot = now()
    db.document("orders/late").set({"total": 1})
    db.document("users/u1/posts/p0").delete()
    db.document("gone/g1").delete()  # the whole top-level collection, after the snapshot
    parallel = LogicalBackupStore(source, key, region_dirs, readers=3, part_docs=4, read_page=3)
    single = LogicalBackupStore(
        source, key, region_dirs, reader=old_reader, readers=3, part_docs=4, read_page=3
    )
    a = parallel.create("20260101T000000Z-0a0a0a", snapshot)
    b = single.create("20260101T000000Z-0b0b0b", snapshot)
    assert parallel.manifest("20260101T000000Z-0a0a0a", "us-central1").schema_version == 3
    assert single.manifest("20260101T000000Z-0b0b0b", "us-central1").schema_version == 2
    assert a.document_count == b.document_count == seeded + 5
    assert a.collection_counts == b.collection_counts
    assert a.collection_counts["ghost"] == 1 and "user" in a.collection_counts
    read_parallel = _backed_up(parallel, "20260101T000000Z-0a0a0a")
    assert read_parallel == _backed_up(single, "20260101T000000Z-0b0b0b")
    assert "users/u1/posts/p0" in read_parallel and "orders/late" not in read_parallel
    assert "gone/g1" in read_parallel  # listed at the snapshot's readTime
    assert not any(name.startswith(collections.BACKUPS) for name in read_parallel)
    assert parallel.manifest("20260101T000000Z-0a0a0a", "europe-west1").group_counts == (
        single.manifest("20260101T000000Z-0b0b0b", "europe-west1").group_counts
    )
    # every value type came through both formats (NaN, -inf, int64, bytes, times...)
    assert '"nan": {"doubleValue": "NaN"}' in read_parallel["users/u1"]
    # and both formats restore to the same database content
    targets = [source.with_database(f"{old_reader}-{n}") for n in range(2)]
    parallel.restore("20260101T000000Z-0a0a0a", "us-central1", targets[0])
    single.restore("20260101T000000Z-0b0b0b", "us-central1", targets[1])
    restored = [all_docs(t) for t in targets]
    first, second = (json.dumps(r, sort_keys=True) for r in restored)
    assert first.replace(f"{old_reader}-0", f"{old_reader}-1") == second


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_streamed_answers_are_parsed_across_chunk_boundaries(chunk: int) -> None:
    rows = [
        {"document": {"name": f"a/{i}", "fields": {"s": {"stringValue": "zażółć ]"}}}}
        for i in range(5)
    ]
    raw = json.dumps(rows, indent=2, ensure_ascii=False).encode()
    pieces = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]
    assert list(json_array_items(pieces)) == rows
    assert list(json_array_items([b"[]"])) == []
    with pytest.raises(ValueError, match="truncated"):
        list(json_array_items(pieces[: len(pieces) // 2]))


def test_parallel_reader_fails_when_a_tree_is_missed(
    store: LogicalBackupStore,
    source: FirestoreDocuments,
    region_dirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    seeded: int,
) -> None:
    """The COUNT at the snapshot's readTime catches a tree the listing did not name."""
    listed = source.root_collections
    monkeypatch.setattr(
        source, "root_collections", lambda t=None: [c for c in listed(t) if c != "orders"]
    )
    with pytest.raises(BackupIntegrityError, match=f"read {seeded - 10} documents but"):
        store.create("20260101T000000Z-0c0c0c", now())
    for region in BACKUP_REGIONS:
        assert not (region_dirs[region] / "20260101T000000Z-0c0c0c" / MANIFEST).exists()
