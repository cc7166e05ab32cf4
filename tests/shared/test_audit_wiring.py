"""The one audited write and the one wiring cache, against the real emulator and Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared import collections
from shared.audit import DELETE, Change, audited_write
from shared.errors import FailedPrecondition
from shared.firestore import get_db, reset_clients
from shared.models import WireModel
from shared.wiring import backend_choice, wired
from tests.conftest import Backends

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Versioned(WireModel):
    name: str
    limit: int
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None


class Plain(WireModel):
    name: str


def change(reason: str = "why") -> Change:
    return Change("admin-1", "thing.set", reason, "req-1", NOW)


def audit_entries() -> list[dict[str, Any]]:
    snaps = get_db().collection(collections.AUDIT_LOG).stream()
    return sorted((s.to_dict() or {} for s in snaps), key=lambda d: str(d.get("after")))


def test_create_update_noop_delete_are_versioned_kept_and_audited(backends: Backends) -> None:
    db = get_db()
    ref = db.collection("pack391_test_things").document("a")

    before, after, changed = audited_write(
        db, ref, change(), Versioned, lambda _: Versioned(name="a", limit=5)
    )
    assert (before, changed) == (None, True)
    assert after is not None and after.version == 1 and after.updated_by == "admin-1"

    before, after, changed = audited_write(
        db,
        ref,
        change("raise"),
        Versioned,
        lambda cur: cur.model_copy(update={"limit": 9}) if cur else None,
        history="versions",
    )
    assert before is not None and before.limit == 5
    assert after is not None and (after.version, after.limit, after.reason) == (2, 9, "raise")
    kept = ref.collection("versions").document("1").get().to_dict() or {}
    assert kept["limit"] == 5 and kept["version"] == 1

    _, after, changed = audited_write(db, ref, change(), Versioned, lambda _: None)
    assert (after, changed) == (None, False)

    _, after, changed = audited_write(db, ref, change(), Versioned, lambda _: DELETE)
    assert (after, changed) == (None, True)
    assert not ref.get().exists

    _, _, changed = audited_write(db, ref, change(), Versioned, lambda _: DELETE)
    assert changed is False  # deleting what is not there changes nothing

    entries = audit_entries()
    assert len(entries) == 3  # create, update, delete; the no-ops wrote nothing
    assert {e["target"] for e in entries} == {"pack391_test_things/a"}
    assert sum(1 for e in entries if e["after"] is None and e["before"]["limit"] == 9) == 1


def test_unversioned_model_is_written_as_built(backends: Backends) -> None:
    db = get_db()
    ref = db.collection("pack391_test_things").document("p")
    _, after, _ = audited_write(
        db, ref, change(), Plain, lambda _: Plain(name="p"), target="things/p"
    )
    assert after == Plain(name="p")
    assert ref.get().to_dict() == {"name": "p"}
    assert audit_entries()[0]["target"] == "things/p"


@pytest.mark.parametrize(
    ("configured", "emulated", "expected"),
    [
        ("auto", True, "local"),
        ("auto", False, "gcp"),
        (" GCP ", True, "gcp"),
        ("local", False, "local"),
    ],
)
def test_backend_choice(
    configured: str, emulated: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FUNCTIONS_EMULATOR", raising=False)
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    if emulated:
        monkeypatch.setenv("FUNCTIONS_EMULATOR", "true")
    assert backend_choice("PACK391_X_BACKEND", configured) == expected


def test_backend_choice_names_the_param_when_wrong() -> None:
    with pytest.raises(FailedPrecondition, match="PACK391_X_BACKEND must be auto, gcp, local"):
        backend_choice("PACK391_X_BACKEND", "aws")


def test_wired_builds_once_per_clients_and_settings(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, int]] = []

    @wired()
    def service(name: str, size: int) -> tuple[str, int]:
        built.append((name, size))
        return (name, size)

    assert service("a", 1) is service("a", 1)
    service("a", 2)
    assert built == [("a", 1), ("a", 2)]
    reset_clients()  # a new Firestore client (a test or the CLI reconfiguring) rewires
    service("a", 1)
    assert built == [("a", 1), ("a", 2), ("a", 1)]
    service.cache_clear()
    service("a", 1)
    assert len(built) == 4
