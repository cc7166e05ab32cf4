"""Which index a Firestore query needs, by Firestore's own rules: pure functions of a
recorded query shape and of ``firestore.indexes.json``.

The rules (Firestore documentation, "Index types in Cloud Firestore",
https://firebase.google.com/docs/firestore/query-data/index-overview; "Manage indexes",
https://firebase.google.com/docs/firestore/query-data/indexing; "Query with range and
inequality filters on multiple fields",
https://firebase.google.com/docs/firestore/query-data/multiple-range-fields;
"Summarize data with aggregation queries",
https://firebase.google.com/docs/firestore/query-data/aggregation-queries):

- Every field gets automatic **single-field** indexes, ascending, descending and
  array-contains, in **collection** scope only: collection-group scope is not automatic
  (a ``fieldOverrides`` entry can add it). A ``fieldOverrides`` entry replaces them for
  its field (``"indexes": []``, as on the TTL fields, removes them all).
- Single-field indexes serve a query on **one field** (an equality, a range, an order,
  or all three on that field), and a query of **equality filters only** on several fields
  (Firestore merges the single-field indexes).
- Anything else needs a **composite** index: equality filters with a range, an
  inequality (``!=``, ``not-in``) or an order on another field; orders on several
  fields; ``array-contains`` with any other clause. Its fields: the equality fields
  (``==``, ``in``, ``is null``: any order, either direction) and the array-contains
  field, then the order fields in the query's order and direction. A range or
  inequality orders by its field implicitly (ascending after any explicit order; several
  inequality fields in field-name order), so an inequality field not ordered explicitly
  comes after the explicit orders. The direction of an order field matters: ``orderBy
  at desc`` needs ``at`` DESCENDING.
- A ``sum()``/``avg()`` reads its field from the index ("computed through index
  scans"): the aggregated field joins the index after the order fields (the
  declared ``walletTransactions (type, createdAt, amount)`` index follows this). A
  ``count()`` needs exactly the index of its query.
- ``__name__`` closes every index implicitly: filters and orders on it add nothing.
- An ``OR`` query runs as its disjunctive normal form: each disjunct needs its index.
- A query on ``__name__`` only (no field), in either scope, needs nothing.

Conservative where the documentation leaves room: a composite index serves only the
exact shape (no merging of composite indexes), in its own query scope; several
inequality fields may come in any order after the explicit orders; ``array-contains``
never merges with equalities.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

NAME = "__name__"
ASC = "ASCENDING"
DESC = "DESCENDING"
CONTAINS = "CONTAINS"
COLLECTION = "COLLECTION"
COLLECTION_GROUP = "COLLECTION_GROUP"

EQUALITY_OPS = frozenset({"EQUAL", "IN"})
UNARY_EQUALITY_OPS = frozenset({"IS_NULL", "IS_NAN"})
ARRAY_OPS = frozenset({"ARRAY_CONTAINS", "ARRAY_CONTAINS_ANY"})
INEQUALITY_OPS = frozenset(
    {
        "LESS_THAN",
        "LESS_THAN_OR_EQUAL",
        "GREATER_THAN",
        "GREATER_THAN_OR_EQUAL",
        "NOT_EQUAL",
        "NOT_IN",
    }
)
UNARY_INEQUALITY_OPS = frozenset({"IS_NOT_NULL", "IS_NOT_NAN"})


class ShapeError(ValueError):
    """A recorded query this module cannot read (an operator it does not know)."""


@dataclass(frozen=True)
class Conjunct:
    """One AND of filters (a disjunct of the query's normal form)."""

    equal: frozenset[str] = frozenset()
    array: frozenset[str] = frozenset()
    inequality: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Shape:
    """What decides a query's index: its collection group and scope, its filters in
    disjunctive normal form, its explicit orders, its aggregated fields."""

    collection: str
    scope: str = COLLECTION
    disjuncts: tuple[Conjunct, ...] = (Conjunct(),)
    order: tuple[tuple[str, str], ...] = ()
    aggregated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Required:
    """A composite index (or a collection-group single-field index) a query needs: the
    equality fields (``(path, "ORDER" | "CONTAINS")``: any order, any direction), then
    ``ordered`` exactly, then ``unordered`` (inequality fields with no explicit order:
    any order among themselves, each in ``unordered_direction``)."""

    collection: str
    scope: str
    prefix: frozenset[tuple[str, str]] = frozenset()
    ordered: tuple[tuple[str, str], ...] = ()
    unordered: frozenset[str] = frozenset()
    unordered_direction: str = ASC
    trailing: tuple[tuple[str, str], ...] = ()

    def fields(self) -> list[tuple[str, str]]:
        """The index's fields, in one valid order (``(path, order or CONTAINS)``)."""
        out = [(path, ASC if mode == "ORDER" else CONTAINS) for path, mode in sorted(self.prefix)]
        out += list(self.ordered)
        out += [(path, self.unordered_direction) for path in sorted(self.unordered)]
        return out + list(self.trailing)

    def as_json(self) -> dict[str, Any]:
        """What to paste into ``firestore.indexes.json``: an entry of ``indexes`` (a
        composite index), or of ``fieldOverrides`` for a single-field index (a
        collection-group one, or one an override removed: add it to that override)."""
        fields = self.fields()
        if len(fields) == 1:
            path, mode = fields[0]
            key = "arrayConfig" if mode == CONTAINS else "order"
            return {
                "collectionGroup": self.collection,
                "fieldPath": path,
                "indexes": [{key: mode, "queryScope": self.scope}],
            }
        return {
            "collectionGroup": self.collection,
            "queryScope": self.scope,
            "fields": [
                {"fieldPath": path, "arrayConfig": CONTAINS}
                if mode == CONTAINS
                else {"fieldPath": path, "order": mode}
                for path, mode in fields
            ],
        }

    @property
    def section(self) -> str:
        """The ``firestore.indexes.json`` list :meth:`as_json` belongs in."""
        return "fieldOverrides" if len(self.fields()) == 1 else "indexes"


# ------------------------------------------------------------------ reading a recorded query


def _path(ref: Mapping[str, Any]) -> str:
    return str(ref.get("fieldPath", ""))


def _dnf(where: Mapping[str, Any] | None) -> list[list[tuple[str, str]]]:
    """The filter as OR of ANDs of ``(field, op)``."""
    if not where:
        return [[]]
    if "compositeFilter" in where:
        composite = where["compositeFilter"]
        parts = [_dnf(f) for f in composite.get("filters", [])]
        op = composite.get("op", "AND")
        if op == "OR":
            return [conj for part in parts for conj in part]
        if op == "AND":
            return [[c for conj in combo for c in conj] for combo in product(*parts)]
        raise ShapeError(f"unknown composite operator {op!r}")
    if "fieldFilter" in where:
        f = where["fieldFilter"]
        return [[(_path(f.get("field", {})), str(f.get("op")))]]
    if "unaryFilter" in where:
        f = where["unaryFilter"]
        return [[(_path(f.get("field", {})), str(f.get("op")))]]
    raise ShapeError(f"unknown filter {sorted(where)}")


def _conjunct(clauses: Iterable[tuple[str, str]]) -> Conjunct:
    equal: set[str] = set()
    array: set[str] = set()
    inequality: set[str] = set()
    for path, op in clauses:
        if path == NAME:
            continue  # __name__ closes every index
        if op in EQUALITY_OPS or op in UNARY_EQUALITY_OPS:
            equal.add(path)
        elif op in ARRAY_OPS:
            array.add(path)
        elif op in INEQUALITY_OPS or op in UNARY_INEQUALITY_OPS:
            inequality.add(path)
        else:
            raise ShapeError(f"unknown filter operator {op!r} on {path!r}")
    return Conjunct(frozenset(equal), frozenset(array), frozenset(inequality))


def shape_of(recorded: Mapping[str, Any]) -> Shape:
    """A recorded query (the recorder's JSON: ``from``, ``where``, ``orderBy``,
    ``aggregations``, REST field names) as a :class:`Shape`."""
    sources = recorded.get("from") or [{}]
    if len(sources) != 1:
        raise ShapeError(f"a query reads one collection, got {sources}")
    source = sources[0]
    scope = COLLECTION_GROUP if source.get("allDescendants") else COLLECTION
    order = tuple(
        (_path(o.get("field", {})), str(o.get("direction") or ASC))
        for o in recorded.get("orderBy", [])
    )
    aggregated: list[str] = []
    for agg in recorded.get("aggregations", []):
        for kind in ("sum", "avg"):
            if kind in agg:
                aggregated.append(_path(agg[kind].get("field", {})))
    return Shape(
        collection=str(source.get("collectionId", "")),
        scope=scope,
        disjuncts=tuple(_conjunct(c) for c in _dnf(recorded.get("where"))),
        order=order,
        aggregated=tuple(aggregated),
    )


# ------------------------------------------------------------------ the rule


@dataclass(frozen=True)
class Declared:
    """``firestore.indexes.json``: composite indexes and field overrides."""

    composite: tuple[Mapping[str, Any], ...] = ()
    overrides: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> Declared:
        return cls(tuple(doc.get("indexes", [])), tuple(doc.get("fieldOverrides", [])))

    @classmethod
    def load(cls, text: str) -> Declared:
        return cls.parse(json.loads(text))

    def single_field(self, collection: str, path: str, scope: str) -> set[str]:
        """The single-field index modes (ASCENDING, DESCENDING, CONTAINS) that exist for
        ``path`` in ``scope``: automatic in collection scope, unless an override replaces
        them."""
        for override in self.overrides:
            if override.get("collectionGroup") == collection and override.get("fieldPath") == path:
                return {
                    str(i.get("order") or i.get("arrayConfig"))
                    for i in override.get("indexes", [])
                    if i.get("queryScope", COLLECTION) == scope
                }
        return {ASC, DESC, CONTAINS} if scope == COLLECTION else set()

    def serves(self, required: Required) -> bool:
        """Whether a declared (or automatic) index serves ``required``."""
        fields = required.fields()
        if len(fields) == 1:
            path, mode = fields[0]
            modes = self.single_field(required.collection, path, required.scope)
            if required.prefix and mode != CONTAINS:  # an equality: either direction
                return bool(modes & {ASC, DESC})
            return mode in modes
        return any(_composite_serves(index, required) for index in self.composite)


def _composite_serves(index: Mapping[str, Any], required: Required) -> bool:
    if index.get("collectionGroup") != required.collection:
        return False
    if index.get("queryScope", COLLECTION) != required.scope:
        return False
    fields = [
        (str(f["fieldPath"]), str(f.get("order") or f.get("arrayConfig")))
        for f in index.get("fields", [])
    ]
    if fields and fields[-1][0] == NAME:
        fields = fields[:-1]
    if len(fields) != len(required.fields()):
        return False
    n = len(required.prefix)
    head, tail = fields[:n], fields[n:]
    if {(path, CONTAINS if mode == CONTAINS else "ORDER") for path, mode in head} != set(
        required.prefix
    ):
        return False
    k, m = len(required.ordered), len(required.unordered)
    rest = tail[k : k + m]
    return (
        tuple(tail[:k]) == required.ordered
        and {path for path, _ in rest} == set(required.unordered)
        and all(mode == required.unordered_direction for _, mode in rest)
        and tuple(tail[k + m :]) == required.trailing
    )


def _requirement(shape: Shape, conj: Conjunct) -> Required:
    """The index one conjunct of ``shape`` reads: equality and array fields, explicit
    orders, the inequality fields it orders by implicitly, the aggregated fields."""
    explicit = [(p, d) for p, d in shape.order if p not in conj.equal]
    while explicit and explicit[-1][0] == NAME:
        explicit.pop()  # __name__ closes every index
    named = {p for p, _ in explicit}
    unordered = frozenset(conj.inequality - named)
    direction = explicit[-1][1] if explicit else ASC
    prefix = frozenset({(p, "ORDER") for p in conj.equal} | {(p, CONTAINS) for p in conj.array})
    covered = {p for p, _ in prefix} | named | unordered
    trailing = tuple((p, ASC) for p in dict.fromkeys(shape.aggregated) if p not in covered)
    return Required(
        shape.collection, shape.scope, prefix, tuple(explicit), unordered, direction, trailing
    )


def needs(shape: Shape) -> list[Required]:
    """Every index ``shape`` reads: composite ones (two fields or more) and single-field
    ones (one field: automatic in collection scope unless an override removed it). An
    equality-only query in collection scope reads one single-field index per field
    (merged)."""
    out: list[Required] = []
    for conj in shape.disjuncts:
        req = _requirement(shape, conj)
        fields = req.fields()
        if not fields:
            continue  # __name__ only
        equality_only = not (conj.array or req.ordered or req.unordered or req.trailing)
        if shape.scope == COLLECTION and equality_only and len(fields) > 1:
            parts = [Required(shape.collection, shape.scope, frozenset({p})) for p in req.prefix]
        else:
            parts = [req]
        out += [part for part in parts if part not in out]
    return out


def required_indexes(shape: Shape) -> list[Required]:
    """The indexes ``shape`` needs that Firestore does not build by itself: composite
    ones, and single-field ones in collection-group scope. Empty: the automatic
    single-field indexes serve it."""
    return [r for r in needs(shape) if len(r.fields()) > 1 or r.scope != COLLECTION]


def missing(shape: Shape, declared: Declared) -> list[Required]:
    """The indexes ``shape`` needs that ``declared`` does not provide (a single-field
    index an override removed included)."""
    return [r for r in needs(shape) if not declared.serves(r)]


def check(
    recorded: Iterable[Mapping[str, Any]], declared: Declared
) -> Iterator[tuple[Required, Mapping[str, Any]]]:
    """``(missing index, first record that needed it)`` for the ``recorded`` queries
    (records as the recorder writes them: ``{"query": ..., "test": ...}``), each missing
    index once."""
    seen: set[Required] = set()
    for record in recorded:
        for req in missing(shape_of(record["query"]), declared):
            if req not in seen:
                seen.add(req)
                yield req, record


def describe(query: Mapping[str, Any]) -> str:
    """A one-line, readable form of a recorded query."""
    shape = shape_of(query)
    parts = [
        " AND ".join(
            [f"{p} ==" for p in sorted(c.equal)]
            + [f"{p} array-contains" for p in sorted(c.array)]
            + [f"{p} <>" for p in sorted(c.inequality)]
        )
        or "(no filter)"
        for c in shape.disjuncts
    ]
    text = f"{shape.collection or '(all)'}"
    if shape.scope == COLLECTION_GROUP:
        text += " (collection group)"
    text += " where " + " OR ".join(parts)
    if shape.order:
        text += " order by " + ", ".join(f"{p} {d.lower()}" for p, d in shape.order)
    kinds = [
        k for agg in query.get("aggregations", []) for k in ("count", "sum", "avg") if k in agg
    ]
    if kinds:
        text += " aggregate " + ", ".join(kinds)
        if shape.aggregated:
            text += f" of {', '.join(shape.aggregated)}"
    return text
