"""Backup fixtures: a logical store on the test emulator, writing into temporary
region directories with a fresh random key."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import GeoPoint

from functions.backup.archive import BackupKey
from functions.backup.documents import FirestoreDocuments
from functions.backup.logical import LogicalBackupStore
from functions.backup.wiring import reset_backup_service
from shared.firestore import get_db
from shared.thresholds import BACKUP_REGIONS
from tests.conftest import Backends


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def key() -> BackupKey:
    return BackupKey.from_base64(new_key())


@pytest.fixture
def region_dirs(tmp_path: Path) -> dict[str, Path]:
    return {region: tmp_path / "backups" / region for region in BACKUP_REGIONS}


@pytest.fixture
def source(backends: Backends) -> FirestoreDocuments:
    return FirestoreDocuments.for_environment(backends.project)


@pytest.fixture
def store(
    source: FirestoreDocuments, key: BackupKey, region_dirs: dict[str, Path], tmp_path: Path
) -> LogicalBackupStore:
    meta = tmp_path / "bundle"
    meta.mkdir()
    (meta / "firestore.rules").write_text("rules_version = '2'; // test bundle\n")
    (meta / "firestore.indexes.json").write_text('{"indexes": [], "fieldOverrides": []}\n')
    return LogicalBackupStore(source, key, region_dirs, meta_dir=meta, drill_database="drill-t")


@pytest.fixture
def configured(
    backends: Backends, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The functions' own wiring (params from the environment), into tmp directories."""
    root = tmp_path / "fn-backups"
    monkeypatch.setenv("PACK391_BACKUP_LOCAL_ROOT", str(root))
    monkeypatch.setenv("PACK391_BACKUP_KEY", new_key())
    monkeypatch.setenv("PACK391_BACKUP_DRILL_DATABASE", "drill-fn")
    reset_backup_service()
    yield root
    reset_backup_service()


WHEN = DatetimeWithNanoseconds(  # type: ignore[no-untyped-call]
    2024, 2, 29, 23, 59, 58, nanosecond=123456789, tzinfo=UTC
)


def every_value(db: firestore.Client) -> dict[str, object]:
    """One field of every Firestore value type, nested too."""
    return {
        "null": None,
        "true": True,
        "false": False,
        "int": 9007199254740993,
        "negative": -(2**63),
        "double": 1.0,
        "nan": float("nan"),
        "inf": float("-inf"),
        "string": 'zażółć gęślą jaźń 🙂\n"quoted"',
        "empty": "",
        "bytes": b"\x00\xff\x10binary",
        "timestamp": WHEN,
        "plain_time": datetime(1970, 1, 1, tzinfo=UTC),
        "geo": GeoPoint(-33.8688, 151.2093),
        "ref": db.document("users/u2/posts/p1"),
        "map": {"nested": {"deep": [1, "two", None, {"x": 3.5, "t": WHEN}]}, "$t": "odd key"},
        "empty_map": {},
        "array": [1, 2.5, "s", None, True, b"b", GeoPoint(1, 2), db.document("a/b"), {"k": []}],
        "empty_array": [],
        "field.with.dots": "x",
    }


def seed(db: firestore.Client) -> int:
    """Users with posts and comments, orders, a settings doc: 27 documents."""
    batch = db.batch()
    count = 0
    for u in range(3):
        user = db.collection("users").document(f"u{u}")
        batch.set(user, {"name": f"user {u}", "n": u, **every_value(db)})
        count += 1
        for p in range(2):
            post = user.collection("posts").document(f"p{p}")
            batch.set(post, {"title": f"post {p}", "at": WHEN})
            batch.set(post.collection("comments").document("c0"), {"text": "hi"})
            count += 2
    for o in range(10):
        batch.set(db.collection("orders").document(f"o{o:02d}"), {"total": o * 1.5})
        count += 1
    batch.set(db.document("settings/global"), {"flags": {"a": True}})
    count += 1
    batch.commit()
    return count


@pytest.fixture
def seeded(backends: Backends) -> int:
    return seed(get_db())
