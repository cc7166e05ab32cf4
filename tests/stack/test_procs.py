"""Clear messages when a backend is missing; config files that reference real collections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared import collections
from stack.platform import datastores, procs
from tests.conftest import ROOT, Backends


def test_missing_jar_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_JAR", "/nonexistent/emulator.jar")
    with pytest.raises(procs.StackError) as caught:
        datastores.find_emulator_jar()
    assert "google-cloud-cli-firestore-emulator" in str(caught.value)
    assert "/nonexistent/emulator.jar" in str(caught.value)


def test_missing_redis_server_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(procs.StackError) as caught:
        datastores.start_redis(tmp_path)
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


def test_a_client_on_another_emulator_leaves_the_environment_alone(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the process's own setting points nowhere; the client must not need it, nor change it
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    client = datastores.firestore_client(backends.firestore_host, backends.project)
    client.collection("pack391_test").document("d").set({"n": 1})
    assert client.collection("pack391_test").document("d").get().to_dict() == {"n": 1}
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == "127.0.0.1:9"
    client.close()
