"""Roles from Firebase ID-token custom claims.

``admin: true`` is an admin; ``ops: true`` (or admin) may use the ops read
functions; any signed-in user may use the user functions. Each ``pack391_*``
function declares the one role it needs where it is defined (see
:func:`shared.edge.callable_function`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from shared.errors import PermissionDenied, Unauthenticated


class Role(enum.Enum):
    """The role a function requires of its caller."""

    USER = "user"
    """Any signed-in Firebase user."""
    OPS = "ops"
    """The ``ops: true`` claim, or an admin."""
    ADMIN = "admin"
    """The ``admin: true`` claim."""


@dataclass(frozen=True)
class Caller:
    """Who made a call, from the verified ID token."""

    uid: str
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.claims.get("admin") is True

    @property
    def is_ops(self) -> bool:
        return self.is_admin or self.claims.get("ops") is True

    @property
    def is_influencer(self) -> bool:
        return self.claims.get("influencer") is True

    def has(self, role: Role) -> bool:
        if role is Role.ADMIN:
            return self.is_admin
        if role is Role.OPS:
            return self.is_ops
        return True


def caller_from_token(uid: str | None, claims: dict[str, Any] | None) -> Caller:
    """A :class:`Caller` from the SDK's ``AuthData``; no uid means not signed in."""
    if not uid:
        raise Unauthenticated("sign in first: this function needs a Firebase ID token")
    return Caller(uid=uid, claims=dict(claims or {}))


def authorize(caller: Caller, role: Role) -> None:
    """Raise :class:`PermissionDenied` unless ``caller`` has ``role``."""
    if not caller.has(role):
        raise PermissionDenied(f"this function needs the {role.value} role")
