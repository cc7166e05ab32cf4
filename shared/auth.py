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
    SERVICE = "service"
    """The ``service: true`` claim: a trusted app backend (an ID token of a service account
    user the platform team made, see docs/traffic-protection.md)."""


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

    @property
    def is_service(self) -> bool:
        """A trusted app backend (custom claim ``service: true``): it acts for its users,
        so it is keyed by principal, never by its egress address."""
        return self.claims.get("service") is True

    @property
    def is_staff(self) -> bool:
        return self.is_ops

    @property
    def is_anonymous(self) -> bool:
        """Signed in with Firebase anonymous auth (no credential behind the account)."""
        firebase = self.claims.get("firebase")
        return isinstance(firebase, dict) and firebase.get("sign_in_provider") == "anonymous"

    def established(self, now_sec: float, min_age_sec: float) -> bool:
        """Whether this caller counts as an *established* user (see :func:`is_established`)."""
        return is_established(self.claims, now_sec, min_age_sec)

    def has(self, role: Role) -> bool:
        if role is Role.ADMIN:
            return self.is_admin
        if role is Role.OPS:
            return self.is_ops
        if role is Role.SERVICE:
            return self.is_service
        return True


def is_established(claims: dict[str, Any], now_sec: float, min_age_sec: float) -> bool:
    """An established user: one whose traffic may shield an address or size its quota.

    Not anonymous (``firebase.sign_in_provider`` is not ``anonymous``), not staff (ops or
    admin: exempt from the mode, so never part of its blast radius), not a service, and
    signed in at least ``min_age_sec`` ago (the token's ``auth_time``, set by Firebase Auth
    at sign-in and kept by every refresh, so a client cannot make an account look older).
    Throwaway accounts made for an attack are minutes old; a phone that signed in again
    today is not established again until the age passes, which costs it nothing but its
    weight in the shared-address count (``PACK391_ESTABLISHED_MIN_AGE_MIN``)."""
    caller = Caller(uid=str(claims.get("uid") or claims.get("sub") or ""), claims=claims)
    if caller.is_anonymous or caller.is_staff or caller.is_service:
        return False
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        return False
    return now_sec - float(auth_time) >= min_age_sec


def caller_from_token(uid: str | None, claims: dict[str, Any] | None) -> Caller:
    """A :class:`Caller` from the SDK's ``AuthData``; no uid means not signed in."""
    if not uid:
        raise Unauthenticated("sign in first: this function needs a Firebase ID token")
    return Caller(uid=uid, claims=dict(claims or {}))


def authorize(caller: Caller, role: Role) -> None:
    """Raise :class:`PermissionDenied` unless ``caller`` has ``role``."""
    if not caller.has(role):
        raise PermissionDenied(f"this function needs the {role.value} role")
