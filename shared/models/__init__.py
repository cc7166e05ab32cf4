"""Pydantic models: requests (what callables accept) and documents (what Firestore holds).

Data only, no I/O. Wire and document field names are camelCase (the app's
convention); Python attributes are snake_case.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr
from pydantic.alias_generators import to_camel

COUNT_MAX = 10**12
"""Sanity maximum of a request's event counts (requests, errors, queue depth): far above
any real minute, far below where int64/double arithmetic loses exactness."""

LATENCY_MAX_MS = 3_600_000
"""Sanity maximum of a reported latency: one hour, in milliseconds."""

DOC_ID_MAX_BYTES = 1500
"""Firestore's limit on a document id, in UTF-8 bytes."""

_RESERVED_DOC_ID = re.compile(r"__.*__", re.DOTALL)


def doc_id_problem(value: str) -> str | None:
    """Why Firestore would refuse ``value`` as a document id, or None."""
    if not value:
        return "must not be empty"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if "/" in value:
        return "must not contain '/'"
    if _RESERVED_DOC_ID.fullmatch(value):
        return "must not look like '__name__' (reserved by Firestore)"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    if size > DOC_ID_MAX_BYTES:
        return f"must be at most {DOC_ID_MAX_BYTES} bytes in UTF-8"
    return None


def _check_doc_id(value: str) -> str:
    problem = doc_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


DocId = Annotated[StrictStr, AfterValidator(_check_doc_id)]
"""A request string that becomes a Firestore document id: refused (``INVALID_ARGUMENT``
naming the field) where Firestore would refuse it, instead of failing there as
``INTERNAL``. Add a ``Field(pattern=...)`` for the area's own shape."""


class RequestModel(BaseModel):
    """Base of callable requests: camelCase, unknown fields rejected. Fields use the
    ``Strict*`` types so that ``"10"`` is not an integer and ``"yes"`` not a boolean."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        extra="forbid",
        frozen=True,
    )


class WireModel(BaseModel):
    """Base of responses and Firestore documents: camelCase, lenient on read."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
    )

    def to_doc(self) -> dict[str, object]:
        """The Firestore form: by alias, Python values (datetimes stay datetimes)."""
        return self.model_dump(mode="python", by_alias=True)
