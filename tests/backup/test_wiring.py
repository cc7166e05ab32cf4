"""Backup configuration: keys, destinations, backend choice."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from google.auth.exceptions import DefaultCredentialsError

from functions.backup.archive import BackupKey, InvalidKey
from functions.backup.logical import LogicalBackupStore
from functions.backup.wiring import (
    backup_destinations,
    backup_key,
    configured_store,
    parse_destinations,
)
from shared.errors import FailedPrecondition
from shared.thresholds import BACKUP_REGIONS
from tests.conftest import PROJECT, Backends


def test_dev_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / ".local" / "backup-dev.key"
    first = backup_key("", emulated=True, dev_key_file=key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert backup_key("", emulated=True, dev_key_file=key_file).key_id == first.key_id


def test_deployed_without_a_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="PACK391_BACKUP_KEY"):
        backup_key("", emulated=False, dev_key_file=tmp_path / "k")
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [("not base64!", "not valid base64"), (base64.b64encode(b"short").decode(), "32 bytes")],
)
def test_bad_keys(text: str, problem: str) -> None:
    with pytest.raises(InvalidKey, match=problem):
        BackupKey.from_base64(text)


def test_configured_key_gives_a_stable_fingerprint() -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    assert backup_key(secret, emulated=False).key_id == BackupKey.from_base64(secret).key_id
    assert backup_key(secret, emulated=False).key_id != BackupKey.from_secret(bytes(32)).key_id


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("", True),
        ("us-central1=/a, europe-west1=/b", True),
        ("us-central1", False),
        ("mars-1=/a", False),
        ("us-central1=/a,us-central1=/b", False),
        ("us-central1=", False),
    ],
)
def test_parse_destinations(text: str, ok: bool) -> None:
    if ok:
        assert set(parse_destinations(text, "P")) <= set(BACKUP_REGIONS)
    else:
        with pytest.raises(FailedPrecondition, match="region=destination"):
            parse_destinations(text, "P")


def test_backup_destinations_default_under_the_root(tmp_path: Path) -> None:
    dirs = backup_destinations(str(tmp_path), "europe-west1=gs://eu-bucket/pack391")
    assert dirs == {
        "us-central1": str(tmp_path / "us-central1"),
        "europe-west1": "gs://eu-bucket/pack391",
        "asia-northeast1": str(tmp_path / "asia-northeast1"),
    }


def test_backend_choice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backends: Backends
) -> None:
    """(``backends``: the logical store reads from the emulator it names.)"""
    monkeypatch.setenv("PACK391_BACKUP_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("PACK391_BACKUP_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("FUNCTIONS_EMULATOR", "true")
    assert isinstance(configured_store(PROJECT), LogicalBackupStore)
    monkeypatch.setenv("PACK391_BACKUP_BACKEND", "managed")
    with pytest.raises(FailedPrecondition, match="no bucket"):
        configured_store(PROJECT)
    buckets = ",".join(f"{r}=gs://b-{r}" for r in BACKUP_REGIONS)
    monkeypatch.setenv("PACK391_BACKUP_BUCKETS", buckets)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    # The managed branch builds the Admin API client, which looks for credentials.
    with pytest.raises(DefaultCredentialsError):
        configured_store(PROJECT)
    monkeypatch.setenv("PACK391_BACKUP_BACKEND", "tape")
    with pytest.raises(FailedPrecondition, match="tape"):
        configured_store(PROJECT)
