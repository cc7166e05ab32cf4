"""The suite's Firestore index check: Firestore's rule for when a query needs
a composite index, as a literal table; the recorder in this process, in a subprocess and
over REST, against the real emulator; and the check failing on the tree before commit
f614e37 (the validator's counts without their two indexes) and passing now.

Rules: https://firebase.google.com/docs/firestore/query-data/index-overview,
https://firebase.google.com/docs/firestore/query-data/indexing (the module docstring of
tests/plugins/firestore_indexes.py quotes what each row follows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from shared import collections
from shared import firestore as shared_firestore
from tests.conftest import Backends
from tests.plugins import firestore_indexes as rule
from tests.plugins import firestore_queries as plugin

ROOT = Path(__file__).resolve().parents[2]
SESSION_LOG = os.environ.get(plugin.ENV)
"""The session's record directory (tests here record into their own meanwhile)."""


def eq(path: str) -> dict[str, Any]:
    return {"fieldFilter": {"field": {"fieldPath": path}, "op": "EQUAL"}}


def op(path: str, operator: str) -> dict[str, Any]:
    return {"fieldFilter": {"field": {"fieldPath": path}, "op": operator}}


def unary(path: str, operator: str) -> dict[str, Any]:
    return {"unaryFilter": {"field": {"fieldPath": path}, "op": operator}}


def both(*filters: dict[str, Any], kind: str = "AND") -> dict[str, Any]:
    return {"compositeFilter": {"op": kind, "filters": list(filters)}}


def order(path: str, direction: str = "ASCENDING") -> dict[str, Any]:
    return {"field": {"fieldPath": path}, "direction": direction}


def query(
    where: dict[str, Any] | None = None,
    order_by: list[dict[str, Any]] | None = None,
    group: bool = False,
    aggregations: list[dict[str, Any]] | None = None,
    collection: str = "c",
) -> dict[str, Any]:
    source: dict[str, Any] = {"collectionId": collection}
    if group:
        source["allDescendants"] = True
    q: dict[str, Any] = {"from": [source]}
    if where:
        q["where"] = where
    if order_by:
        q["orderBy"] = order_by
    if aggregations:
        q["aggregations"] = aggregations
    return q


COUNT: list[dict[str, Any]] = [{"count": {}}]
A, D = "ASCENDING", "DESCENDING"

# (id, recorded query, the composite / collection-group index fields it needs, or [])
TABLE: list[tuple[str, dict[str, Any], list[list[tuple[str, str]]]]] = [
    ("no filter", query(), []),
    ("equality on one field", query(eq("a")), []),
    ("range on one field", query(op("a", "GREATER_THAN")), []),
    ("order by one field desc", query(order_by=[order("a", D)]), []),
    (
        "range and order on the same field",
        query(op("a", "LESS_THAN"), [order("a", D)]),
        [],
    ),
    ("equality on 3 fields: merged, no composite", query(both(eq("a"), eq("b"), eq("c"))), []),
    ("in counts as an equality", query(both(eq("a"), op("b", "IN"))), []),
    ("is null counts as an equality", query(both(eq("a"), unary("b", "IS_NULL"))), []),
    (
        "equality + range on another field",
        query(both(eq("a"), op("t", "GREATER_THAN_OR_EQUAL"), op("t", "LESS_THAN"))),
        [[("a", A), ("t", A)]],
    ),
    (
        "equality + order by another field desc",
        query(eq("a"), [order("t", D)]),
        [[("a", A), ("t", D)]],
    ),
    (
        "count of equality + range (the validator's shape)",
        query(both(eq("anomaly"), op("createdAt", "GREATER_THAN_OR_EQUAL")), aggregations=COUNT),
        [[("anomaly", A), ("createdAt", A)]],
    ),
    ("count of a range on one field", query(op("t", "LESS_THAN"), aggregations=COUNT), []),
    (
        "sum with an equality: the summed field joins the index",
        query(eq("status"), aggregations=[{"sum": {"field": {"fieldPath": "amount"}}}]),
        [[("status", A), ("amount", A)]],
    ),
    ("sum alone", query(aggregations=[{"sum": {"field": {"fieldPath": "amount"}}}]), []),
    ("order by two fields", query(order_by=[order("a"), order("b", D)]), [[("a", A), ("b", D)]]),
    (
        "order by a field then __name__: __name__ is implicit",
        query(order_by=[order("a", D), order("__name__", D)]),
        [],
    ),
    (
        "equality + __name__ range (a cursor): merged",
        query(both(eq("a"), op("__name__", "GREATER_THAN"))),
        [],
    ),
    ("order on an equality field is redundant", query(eq("a"), [order("a", D)]), []),
    (
        "not-equal is an inequality",
        query(both(eq("a"), op("b", "NOT_EQUAL"))),
        [[("a", A), ("b", A)]],
    ),
    (
        "is not null is an inequality",
        query(both(eq("a"), unary("b", "IS_NOT_NULL"))),
        [[("a", A), ("b", A)]],
    ),
    ("array-contains alone", query(op("tags", "ARRAY_CONTAINS")), []),
    (
        "array-contains + equality",
        query(both(op("tags", "ARRAY_CONTAINS"), eq("a"))),
        [[("a", A), ("tags", "CONTAINS")]],
    ),
    (
        "range on one field, order by another: the range field after the order",
        query(op("a", "GREATER_THAN"), [order("b", D)]),
        [[("b", D), ("a", D)]],
    ),
    (
        "ranges on two fields (multiple inequality): both, by name",
        query(both(op("p", "GREATER_THAN"), op("d", "LESS_THAN"))),
        [[("d", A), ("p", A)]],
    ),
    (
        "OR: one index per disjunct",
        query(both(eq("a"), both(eq("b"), op("t", "LESS_THAN")), kind="OR")),
        [[("b", A), ("t", A)]],
    ),
    ("collection group, no filter", query(group=True), []),
    (
        "collection group, one field: not automatic",
        query(eq("a"), group=True),
        [[("a", A)]],
    ),
    (
        "collection group, equality + order",
        query(eq("a"), [order("t", D)], group=True),
        [[("a", A), ("t", D)]],
    ),
]


@pytest.mark.parametrize(("q", "needed"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE])
def test_the_rule_as_a_table(q: dict[str, Any], needed: list[list[tuple[str, str]]]) -> None:
    assert [r.fields() for r in rule.required_indexes(rule.shape_of(q))] == needed


def declared(*indexes: tuple[str, list[tuple[str, str]]], **extra: Any) -> rule.Declared:
    return rule.Declared.parse(
        {
            "indexes": [
                {
                    "collectionGroup": group,
                    "queryScope": extra.get("scope", "COLLECTION"),
                    "fields": [
                        {"fieldPath": p, "arrayConfig": m}
                        if m == "CONTAINS"
                        else {"fieldPath": p, "order": m}
                        for p, m in fields
                    ],
                }
                for group, fields in indexes
            ],
            "fieldOverrides": extra.get("overrides", []),
        }
    )


def test_a_declared_index_serves_its_shape_in_any_equality_order() -> None:
    shape = rule.shape_of(query(both(eq("a"), eq("b"), op("t", "LESS_THAN"))))
    assert rule.missing(shape, declared(("c", [("b", D), ("a", A), ("t", A)]))) == []
    assert (
        rule.missing(shape, declared(("c", [("a", A), ("b", A), ("t", A), ("__name__", A)]))) == []
    )


@pytest.mark.parametrize(
    ("index", "why"),
    [
        ([("t", A), ("a", A)], "the range field must come after the equalities"),
        ([("a", A), ("t", D)], "the range orders ascending"),
        ([("a", A), ("x", A), ("t", A)], "an extra field"),
        ([("a", A)], "the range field is missing"),
    ],
)
def test_a_declared_index_that_does_not_serve(index: list[tuple[str, str]], why: str) -> None:
    shape = rule.shape_of(query(both(eq("a"), op("t", "LESS_THAN"))))
    assert [r.fields() for r in rule.missing(shape, declared(("c", index)))] == [
        [("a", A), ("t", A)]
    ], why


def test_scope_and_collection_must_match() -> None:
    shape = rule.shape_of(query(eq("a"), [order("t", D)], group=True))
    assert rule.missing(shape, declared(("c", [("a", A), ("t", D)])))  # collection scope
    assert not rule.missing(shape, declared(("c", [("a", A), ("t", D)]), scope="COLLECTION_GROUP"))
    other = rule.shape_of(query(eq("a"), [order("t", D)], collection="other"))
    assert rule.missing(other, declared(("c", [("a", A), ("t", D)])))


def test_an_override_that_removes_a_fields_single_field_indexes_is_seen() -> None:
    """The TTL overrides (``"indexes": []``) remove a field's automatic indexes: a range
    on that field alone then needs one back."""
    ttl = [{"collectionGroup": "c", "fieldPath": "expireAt", "ttl": True, "indexes": []}]
    shape = rule.shape_of(query(op("expireAt", "LESS_THAN")))
    assert rule.required_indexes(shape) == []  # automatic, normally
    (need,) = rule.missing(shape, declared(overrides=ttl))
    assert need.section == "fieldOverrides"
    assert need.as_json() == {
        "collectionGroup": "c",
        "fieldPath": "expireAt",
        "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION"}],
    }
    group = rule.shape_of(query(eq("a"), group=True))
    cg = [
        {
            "collectionGroup": "c",
            "fieldPath": "a",
            "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}],
        }
    ]
    assert not rule.missing(group, declared(overrides=cg))


def test_an_unknown_operator_is_an_error_not_a_pass() -> None:
    with pytest.raises(rule.ShapeError):
        rule.shape_of(query(op("a", "SOUNDS_LIKE")))


# ------------------------------------------------------------------ the recorder, for real


@pytest.fixture
def log_dir(tmp_path: Path, backends: Backends) -> Iterator[Path]:
    """Records of this test alone (the session's recorder writes here meanwhile)."""
    before = os.environ.get(plugin.ENV)
    os.environ[plugin.ENV] = str(tmp_path)
    plugin.recorder().install()
    try:
        yield tmp_path
    finally:
        if before is None:
            os.environ.pop(plugin.ENV, None)
        else:
            os.environ[plugin.ENV] = before


def recorded(directory: Path) -> list[dict[str, Any]]:
    return [r for r in plugin.records(directory) if "query" in r]


def hand_to_the_session(directory: Path) -> None:
    """Add this test's records to the session's, so the suite-wide check sees them too
    (``PACK391_FIRESTORE_INDEXES=old.json make test`` then fails on them)."""
    session = SESSION_LOG
    if session:
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in recorded(directory))
        (Path(session) / f"{os.getpid()}-{directory.name}.jsonl").write_text(lines)


def test_the_recorder_sees_a_count_sent_by_the_client_library(log_dir: Path) -> None:
    db = shared_firestore.get_db()
    db.collection("things").document("x").set({"kind": "a", "at": 1})
    q: Any = (
        db.collection("things")
        .where(filter=FieldFilter("kind", "==", "a"))
        .where(filter=FieldFilter("at", ">=", 0))
    )
    assert q.count(alias="n").get()[0][0].value == 1
    list(db.collection("things").order_by("at", direction="DESCENDING").limit(1).stream())
    records = recorded(log_dir)
    assert [r["query"] for r in records] == [
        {
            "from": [{"collectionId": "things"}],
            "where": both(eq("kind"), op("at", "GREATER_THAN_OR_EQUAL")),
            "aggregations": [{"count": {}}],
        },
        {"from": [{"collectionId": "things"}], "orderBy": [order("at", D)]},
    ]
    assert {r["test"] for r in records} == {os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]}
    assert {r["via"] for r in records} == {"grpc"}
    assert {r["origin"] for r in records} == {"tests"}  # sent by the test itself
    assert plugin.report(records, rule.Declared.parse({"indexes": []})) == []


def test_a_subprocess_records_through_sitecustomize(log_dir: Path, backends: Backends) -> None:
    """A process the tests start inherits PYTHONPATH and records on its own."""
    assert str(plugin.SITE_DIR) in os.environ["PYTHONPATH"].split(os.pathsep)
    code = (
        "from shared import firestore as f\n"
        "db = f.get_db()\n"
        "from google.cloud.firestore_v1.base_query import FieldFilter as F\n"
        "list(db.collection_group('subs').where(filter=F('owner', '==', 'u')).stream())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # (this worker's own threads may record meanwhile: a background refresh, a server
    # thread answering a page; only the child's records are this test's)
    (record,) = [r for r in recorded(log_dir) if r["program"].startswith("-c")]
    assert record["query"]["from"] == [{"collectionId": "subs", "allDescendants": True}]
    assert record["origin"] == "bundle"  # no file of tests/ sent it
    assert record["program"].startswith("-c")
    missing = plugin.report([record], rule.Declared())
    assert any('"queryScope": "COLLECTION_GROUP"' in line for line in missing)


def test_the_recorder_sees_a_rest_query(log_dir: Path, backends: Backends) -> None:
    url = (
        f"http://{backends.firestore_host}/v1/projects/{backends.project}"
        "/databases/(default)/documents:runQuery"
    )
    body = {"structuredQuery": {"from": [{"collectionId": "r"}], "orderBy": [order("at", D)]}}
    response = requests.post(url, json=body, headers={"Authorization": "Bearer owner"}, timeout=30)
    assert response.status_code == 200, response.text
    (record,) = recorded(log_dir)
    assert (record["via"], record["query"]["orderBy"]) == ("rest", [order("at", D)])


# ------------------------------------------------------------------ the two indexes

DROPPED_BY_F614E37 = [
    (collections.PAYOUTS, ("anomaly", "createdAt")),
    (collections.TOKEN_TRANSACTIONS, ("mismatch", "at")),
]
"""The two composite indexes commit f614e37 added (``git show f614e37 --
firestore.indexes.json``): before it, the validator's counts had none."""


def test_the_check_fails_on_the_tree_before_f614e37_and_passes_now(log_dir: Path) -> None:
    """The pre-deploy validator counts bad events of every revision (no revision
    filter): an equality on the flag plus a time range. Run for real against the
    emulator, recorded, and checked against the index file less the two indexes, and as
    it is."""
    from functions.deploy_guard.readers import BusinessMetrics

    db = shared_firestore.get_db()
    now = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    for collection, at_field, flag in collections.BUSINESS_RATES.values():
        db.collection(collection).add({at_field: now, flag: True, "revision": "r-1"})
    counts = BusinessMetrics(db).counts(
        None, now - timedelta(minutes=5), now + timedelta(minutes=1)
    )
    assert all(bad == 1 for bad, _ in counts.values())

    records = recorded(log_dir)
    assert {r["origin"] for r in records} == {"bundle"}
    doc = json.loads(plugin.INDEXES_FILE.read_text())
    before = plugin.declared_without(doc, DROPPED_BY_F614E37)
    missing = [
        (req.collection, [p for p, _ in req.fields()]) for req, _ in rule.check(records, before)
    ]
    assert missing == [
        (collections.PAYOUTS, ["anomaly", "createdAt"]),
        (collections.TOKEN_TRANSACTIONS, ["mismatch", "at"]),
    ]
    lines = plugin.report(records, before)
    assert any("test_the_check_fails_on_the_tree_before_f614e37" in line for line in lines)
    assert '"fieldPath": "anomaly",' in "\n".join(lines)
    assert plugin.report(records, rule.Declared.parse(doc)) == []
    hand_to_the_session(log_dir)


def test_the_index_file_before_f614e37_if_history_is_here() -> None:
    """The same shapes against the file as it was (when the clone has the commit)."""
    shown = subprocess.run(
        ["git", "show", "f614e37^:firestore.indexes.json"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if shown.returncode != 0:
        pytest.skip(f"no commit f614e37 in this clone: {shown.stderr.strip()}")
    old = rule.Declared.load(shown.stdout)
    for collection, (flag, at_field) in DROPPED_BY_F614E37:
        validator = query(
            both(eq(flag), op(at_field, "GREATER_THAN_OR_EQUAL"), op(at_field, "LESS_THAN")),
            aggregations=COUNT,
            collection=collection,
        )
        needed = [r.fields() for r in rule.missing(rule.shape_of(validator), old)]
        assert needed == [[(flag, A), (at_field, A)]]
        now = rule.Declared.load(plugin.INDEXES_FILE.read_text())
        assert rule.missing(rule.shape_of(validator), now) == []
