"""Pydantic models: requests (what callables accept) and documents (what Firestore holds).

Data only, no I/O. Wire and document field names are camelCase (the app's
convention); Python attributes are snake_case.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


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
