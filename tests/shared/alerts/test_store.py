"""The alert store against the Firestore emulator: dedup under concurrent raisers, raise
and resolve inside a caller's transaction, acknowledgement, the open list."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from shared import collections
from shared.alerts.changes import AlertChanges
from shared.alerts.policy import AlertResolve, AlertSpec
from shared.alerts.store import AlertStore
from shared.audit import Change
from shared.firestore import get_db
from shared.models.alerts import AlertSource, Severity
from tests.conftest import Backends

T0 = datetime.now(UTC).replace(microsecond=0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def spec(key: str = "scaling:isolation:api", **kw: Any) -> AlertSpec:
    fields: dict[str, Any] = {
        "source": AlertSource.SCALING,
        "kind": "isolation",
        "dedup_key": key,
        "severity": Severity.HIGH,
        "title": f"{key} isolated",
        **kw,
    }
    return AlertSpec(**fields)


def alerts() -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() or {} for s in get_db().collection(collections.ALERTS).stream()}


def store() -> AlertStore:
    return AlertStore(get_db(), notify=lambda: False)


def race(store_of: Any, raisers: int, key: str) -> list[str]:
    """``raisers`` threads raising ``key`` at once (released together by a barrier); the
    ids they got. A raise that fails fails the test with its error."""
    barrier = threading.Barrier(raisers)
    ids: list[str] = []
    errors: list[BaseException] = []

    def raiser(i: int) -> None:
        own = store_of()
        barrier.wait()
        try:
            ids.append(
                own.raise_alert(spec(key, evidence={"raiser": i}), at(0) + timedelta(seconds=i))
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=raiser, args=(i,)) for i in range(raisers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(ids) == raisers
    return ids


def test_concurrent_raisers_of_one_key_make_exactly_one_alert(backends: Backends) -> None:
    # the clean-clone failure: the key's pointer created by one raiser while the others'
    # transactions held it ("ABORTED: Transaction lock timeout" from a raise). The
    # emulator resolves each lock conflict by a ~2 s timeout: 4 raisers take about 6 s.
    key = "scaling:isolation:api"
    ids = race(lambda: AlertStore(get_db(), notify=lambda: False), 4, key)
    (only_id,) = set(ids)
    (doc,) = alerts().values()
    assert (doc["status"], doc["occurrences"]) == ("open", 4)
    pointer = store()._key_ref(key).get().to_dict() or {}
    assert pointer["alertId"] == only_id


class NoPrecreate(AlertChanges):
    """Raising that skips making sure of the pointer before its transaction: the raise
    then finds it missing inside, as after a failed or raced first step."""

    def _ensure_keys(self, keys: Any, now: datetime) -> None:
        return None


def test_raisers_that_find_the_pointer_missing_still_make_one_alert(backends: Backends) -> None:
    ids = race(lambda: NoPrecreate(get_db(), notify=lambda: False), 3, "scaling:isolation:x")
    (only_id,) = set(ids)
    (doc,) = alerts().values()
    assert (doc["status"], doc["occurrences"]) == ("open", 3)
    assert (store()._key_ref("scaling:isolation:x").get().to_dict() or {})["alertId"] == only_id


def test_raise_updates_resolve_closes_and_the_next_raise_opens_a_new_one(
    backends: Backends,
) -> None:
    s = store()
    first = s.raise_alert(spec(), at(0))
    assert s.raise_alert(spec(severity=Severity.CRITICAL, title="worse"), at(1)) == first
    assert s.raise_alert(spec(severity=Severity.LOW), at(2)) == first
    doc = alerts()[first]
    assert (doc["occurrences"], doc["severity"], doc["lastSeenAt"]) == (3, "critical", at(2))
    assert s.resolve("scaling:isolation:other", at(3)) is None  # nothing active: nothing
    assert s.resolve("scaling:isolation:api", at(3), reason="recovered") == first
    assert s.resolve("scaling:isolation:api", at(4)) is None  # once
    done = alerts()[first]
    assert (done["status"], done["resolvedBy"], done["resolution"], done["durationSec"]) == (
        "resolved",
        "system",
        "recovered",
        180.0,
    )
    assert done["expireAt"] > done["resolvedAt"]
    second = s.raise_alert(spec(), at(5))
    assert second != first and alerts()[second]["status"] == "open"


def test_raise_and_resolve_inside_the_callers_transaction(backends: Backends) -> None:
    db, s = get_db(), store()
    state = db.collection("pack391_test_state").document("svc")

    @firestore.transactional
    def isolate(tx: firestore.Transaction, isolated: bool) -> list[str | None]:
        state.get(transaction=tx)  # the area's own read first
        change = spec() if isolated else AlertResolve("scaling:isolation:api", "recovered")
        out = s.apply([change, spec("scaling:isolation:web")], at(0), tx)
        tx.set(state, {"isolated": isolated})  # then the area's own write
        return out

    opened = isolate(db.transaction(), True)
    assert len(set(opened)) == 2 and len(alerts()) == 2
    resolved = isolate(db.transaction(), False)
    assert resolved[0] == opened[0] and resolved[1] == opened[1]
    assert alerts()[opened[0]]["status"] == "resolved"
    assert alerts()[opened[1]]["occurrences"] == 2
    assert state.get().to_dict() == {"isolated": False}


def test_acknowledge_any_area_and_the_open_list(backends: Backends) -> None:
    s = store()
    ddos = s.raise_alert(spec("ddos:mode", source=AlertSource.DDOS, kind="ddos_mode"), at(0))
    deploy = s.raise_alert(
        spec("deploy:rollback:prod:api", source=AlertSource.DEPLOY, resolve_on_acknowledge=True),
        at(1),
    )
    assert [i for i, _ in s.open_alerts()] == [deploy, ddos]  # newest first
    change = Change("olga", "ops.alert.acknowledge", "on it", "req-1", at(2))
    doc, changed = s.acknowledge(ddos, change)
    assert changed and doc is not None and doc.status == "acknowledged"
    assert s.acknowledge(ddos, change)[1] is False  # a no-op answer
    assert s.acknowledge("nope", change) == (None, False)
    # acknowledged stays listed until it resolves; a rollback alert resolves on it
    doc, changed = s.acknowledge(deploy, change)
    assert changed and doc is not None and (doc.status, doc.resolved_by) == ("resolved", "olga")
    assert [(i, a.status.value) for i, a in s.open_alerts()] == [(ddos, "acknowledged")]
    assert s.raise_alert(spec("deploy:rollback:prod:api"), at(3)) != deploy  # key released
    s.resolve("ddos:mode", at(4))
    assert alerts()[ddos]["status"] == "resolved"
    audit = [a.to_dict() or {} for a in get_db().collection(collections.AUDIT_LOG).stream()]
    assert sorted(a["target"] for a in audit) == sorted(
        [f"{collections.ALERTS}/{ddos}", f"{collections.ALERTS}/{deploy}"]
    )


def test_contention_is_retried_in_rounds_and_other_errors_are_not() -> None:
    from google.api_core import exceptions as gexc

    from shared.firestore import contended as _contended

    def aborted(message: str) -> Exception:
        return gexc.Aborted(message)  # type: ignore[no-untyped-call]

    def exhausted() -> ValueError:
        error = ValueError("Failed to commit transaction in 12 attempts.")
        error.__cause__ = aborted("Transaction lock timeout")
        return error

    contention = [
        aborted("lock timeout"),
        exhausted(),
        gexc.AlreadyExists("pointer"),  # type: ignore[no-untyped-call]
    ]
    calls: list[int] = []

    def contended() -> str:
        calls.append(1)
        if len(calls) <= len(contention):
            raise contention[len(calls) - 1]
        return "raised"

    assert _contended(contended, also=(gexc.AlreadyExists,)) == "raised" and len(calls) == 4

    calls.clear()
    contention.insert(0, gexc.AlreadyExists("a run of that id"))  # type: ignore[no-untyped-call]
    with pytest.raises(gexc.AlreadyExists):  # not contention unless the caller says so
        _contended(contended)
    assert len(calls) == 1

    calls.clear()

    def invalid() -> str:  # a ValueError that is not contention (a validation error)
        calls.append(1)
        raise ValueError("bad alert")

    with pytest.raises(ValueError, match="bad alert"):
        _contended(invalid)
    assert len(calls) == 1

    calls.clear()

    def always_aborted() -> str:
        calls.append(1)
        raise aborted("lock timeout")

    with pytest.raises(gexc.Aborted):
        _contended(always_aborted)
    from shared import thresholds

    assert len(calls) == thresholds.TX_ROUNDS
