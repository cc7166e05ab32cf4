"""The counts the canary judge and the pre-deploy gates run need
composite indexes that the emulator never asks for.

Firestore serves a query with equality filters only from its automatic single-field
indexes (merging them), but a query that combines equality filters with a range filter on
another field needs a composite index whose fields are the equality fields (any order)
followed by the range field; without one, production Firestore answers
``FAILED_PRECONDITION: The query requires an index`` (Firestore documentation, "Index
types in Cloud Firestore": composite indexes; "Query limitations"). The emulator answers
anyway, so no test that runs the query can see it. These are the query shapes of
:class:`functions.deploy_guard.readers.BusinessMetrics` and ``GateReader.stuck_payouts``,
checked against ``firestore.indexes.json`` by that rule
(:mod:`tests.plugins.firestore_indexes`, the rule of the suite-wide check). The
suite-wide check (tests/plugins/firestore_queries.py) sees only the queries the tests
run; this file covers every shape these counts can take, the ones no test's data
reaches included (a flag count runs only when the window has events).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared import collections
from tests.plugins import firestore_indexes as rule

ROOT = Path(__file__).resolve().parents[2]


def served(collection: str, equal: set[str], range_field: str, doc: Any = None) -> bool:
    """The declared indexes serve a count with equality on ``equal`` plus a range on
    ``range_field`` (Firestore's rule: tests/plugins/firestore_indexes.py)."""
    filters = [
        {"fieldFilter": {"field": {"fieldPath": f}, "op": "EQUAL"}} for f in sorted(equal)
    ] + [
        {"fieldFilter": {"field": {"fieldPath": range_field}, "op": o}}
        for o in ("GREATER_THAN_OR_EQUAL", "LESS_THAN")
    ]
    query = {
        "from": [{"collectionId": collection}],
        "where": {"compositeFilter": {"op": "AND", "filters": filters}},
        "aggregations": [{"count": {}}],
    }
    declared = rule.Declared.parse(doc or json.loads((ROOT / "firestore.indexes.json").read_text()))
    return rule.missing(rule.shape_of(query), declared) == []


SHAPES = [
    (collection, equal, at_field)
    for collection, at_field, flag in collections.BUSINESS_RATES.values()
    for equal in (
        {flag},  # the validator, every revision: bad events in the window
        {collections.BUSINESS_REVISION_FIELD},  # the judge: all of a revision's events
        {collections.BUSINESS_REVISION_FIELD, flag},  # the judge: its bad events
    )
] + [(collections.PAYOUTS, {"status"}, "createdAt")]  # stuck payouts


@pytest.mark.parametrize(
    ("collection", "equal", "range_field"),
    SHAPES,
    ids=[f"{c}:{'+'.join(sorted(e))}:{r}" for c, e, r in SHAPES],
)
def test_every_count_with_a_range_has_its_composite_index(
    collection: str, equal: set[str], range_field: str
) -> None:
    """Before: payouts by anomaly and token_transactions by mismatch, each with a time
    range (the validator's count with no revision filter), had no index."""
    assert served(collection, equal, range_field), (
        f"{collection}: equality on {sorted(equal)} with a range on {range_field} needs a "
        "composite index in firestore.indexes.json"
    )


def test_the_rule_refuses_an_index_in_the_wrong_order() -> None:
    """The check itself can fail: the range field must come last."""
    wrong = {
        "indexes": [
            {
                "collectionGroup": collections.PAYOUTS,
                "queryScope": "COLLECTION",
                "fields": [
                    {"fieldPath": "createdAt", "order": "ASCENDING"},
                    {"fieldPath": "anomaly", "order": "ASCENDING"},
                ],
            }
        ]
    }
    assert not served(collections.PAYOUTS, {"anomaly"}, "createdAt", wrong)
    assert served(collections.PAYOUTS, set(), "createdAt", wrong)  # one field: automatic
