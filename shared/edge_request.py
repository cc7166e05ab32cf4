"""The callable request before the SDK parses it: its id, the checks of its body on the
raw bytes (size, nesting depth, JSON, the ``{"data": ...}`` shape), and the parse of its
``data`` into the request model (:func:`parse_request`: a problem names its field).

:func:`shared.edge.callable_function` runs :func:`malformed_body_problem` on every POST
after the front door (:mod:`shared.edge_door`) and before the SDK's own parse, and
:func:`parse_request` once the caller is authorized."""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from shared.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def request_id_of(request: flask.Request) -> str:
    """The Cloud Trace id when Google's front end set one, else a fresh id."""
    trace = request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = trace.split("/", 1)[0].strip()
    return trace_id or uuid.uuid4().hex


MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude a request may carry: JavaScript's ``Number.MAX_SAFE_INTEGER``,
the most a web client can send exactly, and the most Redis/Lua (doubles) holds exactly.
Larger ones would pass a model's ``ge``-only bounds and then fail in Firestore (int64) or
Redis as ``INTERNAL``."""


def unsafe_number_problem(data: Any) -> tuple[str, str] | None:
    """The first number in ``data`` no backend can hold, as ``(field path, problem)``:
    an integer beyond :data:`MAX_SAFE_INTEGER` or a float that is NaN or infinite (the
    body check refuses the ``NaN``/``Infinity`` literals; ``1e999`` still parses to
    infinity). The path is dotted camelCase as sent, list indexes as numbers."""
    stack: list[tuple[str, Any]] = [("", data)]  # iterative: a task body is not depth-checked
    while stack:
        path, value = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                return path, f"must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return path, "must be a finite number (NaN/Infinity are not JSON)"
        elif isinstance(value, dict):
            items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
            stack.extend(reversed(items))  # first key on top: problems found in sent order
        elif isinstance(value, list):
            items = [(f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value)]
            stack.extend(reversed(items))
    return None


def parse_request(model: type[M], data: Any) -> M:
    """Validate callable ``data`` with ``model``; the first problem names its field.

    Numbers no backend can hold (see :func:`unsafe_number_problem`) are refused first,
    whatever the model says."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("data", f"must be an object, got {type(data).__name__}")
    unsafe = unsafe_number_problem(data)
    if unsafe is not None:
        raise InvalidInput(*unsafe)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        first = problems[0]
        field = ".".join(str(part) for part in first["loc"])
        return_problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in problems
        ]
        raise InvalidInput(field, first["msg"], problems=return_problems) from None


MAX_BODY_BYTES = 1 << 20
"""Largest callable request body accepted (1 MiB), refused before it is parsed. The
largest request any model accepts is a few kB; Cloud Run itself would take 32 MiB."""

MAX_BODY_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a request body, checked on the raw
bytes before anything parses them: ``json.loads`` recurses once per level and raises
``RecursionError`` (an HTML 500) near 1,000 levels. The deepest model nests 4 levels."""

_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
"""A JSON string literal with its backslash escapes; an unterminated one runs to the end.
Possessive and always matching from any quote, so cutting strings out stays linear."""
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_CURLY_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` nests arrays/objects more than ``limit`` levels deep,
    decided without parsing it (and without a Python loop over its bytes).

    String literals are cut out (brackets in strings do not count), the rest is reduced to
    its brackets, and each pass removes every innermost ``[]`` pair: one level. A pair still
    there after ``limit`` passes means deeper. Brackets never closed (a truncated body) are
    levels too, since the parser recurses into them before it finds the truncation; for a
    malformed body the count is an upper bound, which only makes its refusal come earlier.
    Cost: one regex pass and at most ``limit`` byte replaces (about 1 ms per MiB each)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(_CURLY_AS_SQUARE, _NOT_A_BRACKET)
    levels = 0
    while b"[]" in brackets:
        if levels == limit:
            return True
        brackets = brackets.replace(b"[]", b"")
        levels += 1
    # Left: closers never opened, then openers never closed ("]]][[").
    return levels + brackets.count(b"[") > limit


class _NotJsonConstant(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's json reads them, JSON has no such thing."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonConstant(name)


def leave_body_unread() -> None:
    """The current request is refused before its body is read (the front door, a wrong
    Content-Type, a Content-Length over the limit): make sure nothing reads it after the
    answer either. functions-framework, the server of a deployed function, calls
    ``request.get_data()`` after every response ("read the entire request before
    responding"), which would read a refused body whole, up to Cloud Run's 32 MiB, into
    memory. An empty cached body stops that; a body already (partly) read stays cached."""
    if flask.has_request_context() and getattr(flask.request, "_cached_data", None) is None:
        flask.request._cached_data = b""


BODY_READ_CHUNK = 64 * 1024
"""Bytes asked of the request stream at a time while reading a body (:func:`read_body`)."""


def read_body(request: flask.Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes.

    Read from the stream in chunks and never more than ``limit + 1`` bytes, so a chunked
    body (``Transfer-Encoding: chunked``, no ``Content-Length``) is refused as soon as it
    passes the limit instead of being read whole first (``get_data`` reads to the end).
    What was read becomes the request's cached body (werkzeug's ``get_data`` returns
    ``_cached_data`` when set), so the SDK's ``request.get_json()`` and ``request.data``
    see exactly these bytes. For a body too long that is its first ``limit + 1`` bytes,
    the rest left unread: functions-framework (what a deployed function runs) calls
    ``request.get_data()`` after every response ("read the entire request before
    responding"), which would otherwise read the whole body into memory after all. The
    request goes no further than its refusal, so nothing takes the truncated body for the
    real one."""
    cached = getattr(request, "_cached_data", None)
    if isinstance(cached, bytes):
        return cached if len(cached) <= limit else None
    stream = request.stream
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(BODY_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    raw = b"".join(parts)
    request._cached_data = raw
    return raw if total <= limit else None


def malformed_body_problem(request: flask.Request) -> str | None:
    """Why a POST is not a valid callable request, or None when it is.

    Size and nesting depth are checked on the raw bytes first, so an oversized or
    50,000-deep body is refused before any parser (ours or the SDK's) sees it; the size
    while reading (:func:`read_body`), never after reading a chunked body whole."""
    content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return "Content-Type must be application/json"
    too_large = f"request body is larger than {MAX_BODY_BYTES} bytes"
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return too_large
    raw = read_body(request, MAX_BODY_BYTES)
    if raw is None:  # longer than the limit, whatever Content-Length said (or did not)
        return too_large
    if nests_deeper_than(raw, MAX_BODY_DEPTH):
        return f"request body nests deeper than {MAX_BODY_DEPTH} levels"
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except _NotJsonConstant:
        return "request body is not valid JSON: NaN/Infinity are not JSON"
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "request body is not valid JSON"
    if not isinstance(body, dict):
        return 'request body must be a JSON object {"data": ...}'
    if "data" not in body:
        return 'request body must have a "data" field'
    extra = sorted(key for key in body if key != "data")
    if extra:
        return f"request body has unknown fields: {', '.join(extra)}"
    return None
