"""Clear messages when a backend is missing; config files that reference real collections."""

from __future__ import annotations

import json

import pytest

from shared import collections
from stack import procs
from tests.conftest import ROOT


def test_missing_jar_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_JAR", "/nonexistent/emulator.jar")
    with pytest.raises(procs.StackError) as caught:
        procs.find_emulator_jar()
    assert "google-cloud-cli-firestore-emulator" in str(caught.value)
    assert "/nonexistent/emulator.jar" in str(caught.value)


def test_missing_redis_server_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(procs.StackError) as caught:
        procs.start_redis(ROOT / ".local" / "test-logs")
    assert "apt-get install redis-server" in str(caught.value)
    assert "REDIS_URL" in str(caught.value)


def test_indexes_name_declared_collections() -> None:
    declared = {
        value
        for name, value in vars(collections).items()
        if name.isupper() and isinstance(value, str)
    }
    indexes = json.loads((ROOT / "firestore.indexes.json").read_text())
    assert indexes["indexes"], "no composite indexes declared"
    for index in indexes["indexes"]:
        assert index["collectionGroup"] in declared
        assert index["queryScope"] in ("COLLECTION", "COLLECTION_GROUP")
        assert len(index["fields"]) >= 2


def test_firebase_json_declares_the_bundle() -> None:
    config = json.loads((ROOT / "firebase.json").read_text())
    (codebase,) = config["functions"]
    assert (codebase["source"], codebase["runtime"]) == (".", "python311")
    for kept_out in ("venv", ".git", "tests", "**/__pycache__", "stack"):
        assert kept_out in codebase["ignore"]
    assert config["firestore"] == {"rules": "firestore.rules", "indexes": "firestore.indexes.json"}
    assert {"functions", "firestore", "auth"} <= set(config["emulators"])
