"""``pack391 backup / verify / restore`` against the test emulator, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.firestore import get_db
from stack.cli import main


def test_backup_verify_restore(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = get_db()
    for i in range(12):
        db.document(f"orders/o{i}").set({"i": i})
        db.document(f"orders/o{i}/lines/l0").set({"sku": "x"})

    assert main(["backup"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "complete" and record["documentCount"] == 24
    backup_id = record["backupId"]

    assert main(["verify"]) == 0
    assert capsys.readouterr().out.count(": ok (24 documents)") == 3

    assert main(["restore", backup_id]) == 1
    assert "not empty" in capsys.readouterr().err

    assert (
        main(["restore", backup_id, "--database", "cli-restored", "--region", "asia-northeast1"])
        == 0
    )
    restored = json.loads(capsys.readouterr().out)
    assert restored["documents"] == 24
    assert restored["groupCounts"] == {"orders": 12, "lines": 12}

    part = next((configured / "us-central1" / backup_id / "parts").iterdir())
    part.write_bytes(b"garbage")
    assert main(["verify", backup_id]) == 1
    captured = capsys.readouterr()
    assert f"us-central1: FAILED: part parts/{part.name}" in captured.err
    assert captured.out.count(": ok") == 2


def test_verify_without_backups_and_help(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify"]) == 1
    assert "no backup" in capsys.readouterr().err
    for command in ("backup", "verify", "restore"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: pack391 " + command in capsys.readouterr().out


def test_needs_the_emulator_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    assert main(["backup"]) == 2
    assert "FIRESTORE_EMULATOR_HOST" in capsys.readouterr().err
