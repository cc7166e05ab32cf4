"""Records the shape of every Firestore query this process sends, for the suite's index
check (tests/plugins/firestore_queries.py).

Enabled only by the environment: with ``PACK391_FIRESTORE_QUERY_LOG`` set to a directory,
every ``RunQuery`` and ``RunAggregationQuery`` request is written there, once per shape
and process, as a JSON line in ``<pid>.jsonl``: the query without its values (``from``,
``where`` with field paths and operators, ``orderBy``, the aggregations), the test that
was running (``PYTEST_CURRENT_TEST``, inherited by subprocesses at their start) and the
program. The test fixtures load it into every Python process they start
(``sitecustomize`` beside this file, on ``PYTHONPATH``); production code never sees it.

Where the requests are seen, below every client the bundle uses:

- gRPC: the channel's unary-stream call (``grpc._channel._UnaryStreamMultiCallable`` and
  its single-threaded twin, ``grpc.aio``'s ``UnaryStreamMultiCallable``): the Firestore
  client library (sync and async) and the backup's raw stubs. The request is serialised
  with the call's own serialiser and parsed as the ``google.firestore.v1`` message, so
  what is recorded is what is sent.
- REST: ``requests.Session.request`` to ``…:runQuery`` / ``…:runAggregationQuery`` (the
  backup's REST reader), its JSON body.

The modules are patched when first imported (a meta-path finder), so a process that
never talks to Firestore never imports grpc for it. Recording never fails a call: an
error is written as a record of its own, which the check reports.
"""

from __future__ import annotations

# Only what every Python process loads anyway: this runs at the start of each process the
# tests start (json and the rest are imported when the first query is recorded).
import _thread
import os
import sys

TYPE_CHECKING = False  # typing itself costs 2 ms to import
if TYPE_CHECKING:
    import importlib.machinery
    from collections.abc import Callable, Mapping
    from types import FrameType, ModuleType
    from typing import Any

ENV = "PACK391_FIRESTORE_QUERY_LOG"
RUN_QUERY = "/google.firestore.v1.Firestore/RunQuery"
RUN_AGGREGATION_QUERY = "/google.firestore.v1.Firestore/RunAggregationQuery"
_MARK = "_pack391_records_firestore_queries"

TESTS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ""
)
"""``tests/``: a query whose nearest caller outside the libraries is here is the
tests' own (a test reading the emulator), not the bundle's."""
_LIBRARY_DIRS = tuple(
    {os.path.join(os.path.dirname(os.__file__), ""), os.path.join(sys.prefix, "lib", "")}
)

_lock = _thread.allocate_lock()
_seen: set[tuple[int, str, str]] = set()
_seen_requests: set[tuple[int, str, bytes, str]] = set()


# ------------------------------------------------------------------ the record


def strip_filter(where: Mapping[str, Any]) -> dict[str, Any]:
    """A filter without its values: field paths and operators only."""
    if "compositeFilter" in where:
        composite = where["compositeFilter"]
        return {
            "compositeFilter": {
                "op": composite.get("op", "AND"),
                "filters": [strip_filter(f) for f in composite.get("filters", [])],
            }
        }
    for kind in ("fieldFilter", "unaryFilter"):
        if kind in where:
            f = where[kind]
            return {kind: {"field": f.get("field", {}), "op": f.get("op")}}
    return dict(where)


def query_shape(request: Mapping[str, Any]) -> dict[str, Any]:
    """A ``RunQuery``/``RunAggregationQuery`` request (REST JSON field names) reduced to
    what decides its index."""
    aggregations: list[dict[str, Any]] = []
    if "structuredAggregationQuery" in request:
        outer = request["structuredAggregationQuery"]
        query = outer.get("structuredQuery", {})
        aggregations = [
            {k: v for k, v in agg.items() if k != "alias"} for agg in outer.get("aggregations", [])
        ]
    else:
        query = request.get("structuredQuery", {})
    shape: dict[str, Any] = {"from": query.get("from", [])}
    if query.get("where"):
        shape["where"] = strip_filter(query["where"])
    if query.get("orderBy"):
        shape["orderBy"] = query["orderBy"]
    if aggregations:
        shape["aggregations"] = aggregations
    return shape


_INTERCEPTOR = os.path.join("shared", "firestore_budget.py")
"""The bundle's channel interceptor (shared/firestore_budget.py): plumbing, not a caller."""


def origin() -> str:
    """``"tests"`` when the nearest caller outside the libraries (Python's, the venv's,
    this module, the bundle's gRPC interceptor that every Firestore RPC passes through)
    is a file of ``tests/``, else ``"bundle"``."""
    frame: FrameType | None = sys._getframe(1)
    here = os.path.abspath(__file__)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (
            name.startswith("<")
            or name == here
            or name.endswith(_INTERCEPTOR)
            or "site-packages" in name
            or name.startswith(_LIBRARY_DIRS)
        ):
            return "tests" if os.path.abspath(name).startswith(TESTS_DIR) else "bundle"
        frame = frame.f_back
    return "bundle"


def _current_test() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" (", 1)[0] if current.endswith(")") else current


def _write(record: dict[str, Any]) -> None:
    directory = os.environ.get(ENV)
    if not directory:
        return
    import json

    line = json.dumps(record, sort_keys=True)
    pid = os.getpid()
    key = json.dumps([record.get("query", record.get("error")), record.get("origin")])
    with _lock:
        if (pid, directory, key) in _seen:
            return
        _seen.add((pid, directory, key))
        with open(os.path.join(directory, f"{pid}.jsonl"), "a", encoding="utf-8") as out:
            out.write(line + "\n")


def record(request: Mapping[str, Any], via: str) -> None:
    """Write ``request``'s shape (once per shape and process)."""
    try:
        shape = query_shape(request)
        _write(
            {
                "query": shape,
                "origin": origin(),
                "test": _current_test(),
                "via": via,
                "program": _program(),
            }
        )
    except Exception as exc:  # never fail the caller's query
        _write({"error": f"{via}: {exc!r}", "test": _current_test(), "program": _program()})


def _program() -> str:
    return " ".join(os.path.basename(a) for a in sys.argv[:3])


# ------------------------------------------------------------------ gRPC


def _strip_filter(where: Any) -> None:
    kind = where.WhichOneof("filter_type")
    if kind == "composite_filter":
        for sub in where.composite_filter.filters:
            _strip_filter(sub)
    elif kind == "field_filter":
        where.field_filter.ClearField("value")


def _grpc_request(method: Any, serializer: Any, request: Any) -> None:
    """Parse a request the way the server will, drop its values, and record its shape
    unless this process already recorded that shape for this origin (the protobuf's
    bytes are the key: converting to JSON costs 80 us, the rest about 10)."""
    name = method.decode() if isinstance(method, bytes) else str(method)
    if name not in (RUN_QUERY, RUN_AGGREGATION_QUERY):
        return
    try:
        from google.cloud.firestore_v1.types import firestore as types

        data = serializer(request) if serializer is not None else request
        cls = types.RunQueryRequest if name == RUN_QUERY else types.RunAggregationQueryRequest
        message = cls.pb()()
        message.ParseFromString(data)
        if name == RUN_QUERY:
            query = message.structured_query
        else:
            query = message.structured_aggregation_query.structured_query
            for agg in message.structured_aggregation_query.aggregations:
                agg.alias = ""
        for part in ("start_at", "end_at", "limit", "offset", "select"):
            query.ClearField(part)
        _strip_filter(query.where)
        message.ClearField("parent")
        message.ClearField("consistency_selector")
        key = (
            os.getpid(),
            os.environ.get(ENV, ""),
            message.SerializeToString(deterministic=True),
            origin(),
        )
        with _lock:
            if key in _seen_requests:
                return
            _seen_requests.add(key)
        from google.protobuf.json_format import MessageToDict

        record(MessageToDict(message), "grpc")
    except Exception as exc:
        _write({"error": f"grpc {name}: {exc!r}", "test": _current_test(), "program": _program()})


def _patch_call(cls: Any) -> None:
    original = cls.__call__
    if getattr(original, _MARK, False):
        return

    def call(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        _grpc_request(self._method, self._request_serializer, request)
        return original(self, request, *args, **kwargs)

    setattr(call, _MARK, True)
    cls.__call__ = call


def _patch_grpc(module: ModuleType) -> None:
    for name in ("_UnaryStreamMultiCallable", "_SingleThreadedUnaryStreamMultiCallable"):
        cls = getattr(module, name, None)
        if cls is not None:
            _patch_call(cls)


def _patch_grpc_aio(module: ModuleType) -> None:
    _patch_call(module.UnaryStreamMultiCallable)


# ------------------------------------------------------------------ REST


def _rest_body(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    import json

    if kwargs.get("json") is not None:
        return kwargs["json"]
    data = kwargs.get("data", args[1] if len(args) > 1 else None)
    if isinstance(data, bytes | str):
        return json.loads(data)
    return None


def _patch_requests(module: ModuleType) -> None:
    cls = module.Session
    original = cls.request
    if getattr(original, _MARK, False):
        return

    def request(self: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        path = str(url).split("?", 1)[0]
        if str(method).upper() == "POST" and path.endswith((":runQuery", ":runAggregationQuery")):
            try:
                body = _rest_body(args, kwargs)
                if isinstance(body, dict):
                    record(body, "rest")
            except Exception as exc:
                _write({"error": f"rest {path}: {exc!r}", "test": _current_test()})
        return original(self, method, url, *args, **kwargs)

    setattr(request, _MARK, True)
    cls.request = request


# ------------------------------------------------------------------ installing

PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "grpc._channel": _patch_grpc,
    "grpc.aio._channel": _patch_grpc_aio,
    "requests.sessions": _patch_requests,
}


class _PatchingLoader:
    """Runs the real loader, then patches the module (an ``importlib.abc.Loader`` by
    duck typing: importing importlib.abc costs every process 8 ms)."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PatchOnImport:
    """A meta-path finder (duck-typed) that wraps the loader of :data:`PATCHES`."""

    def find_spec(
        self, fullname: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, patch)  # type: ignore[assignment]
                return spec
        return None


def install() -> bool:
    """Record from now on, if ``PACK391_FIRESTORE_QUERY_LOG`` is set: patch what is
    imported already, the rest when it is imported. Idempotent."""
    if not os.environ.get(ENV):
        return False
    for name, patch in PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    return True
