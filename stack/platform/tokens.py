"""ID tokens the local stack accepts: unsigned, as the Firebase Auth emulator issues them.

firebase-admin in Auth-emulator mode (``FIREBASE_AUTH_EMULATOR_HOST`` set) accepts
``alg: none`` tokens but still checks ``aud`` (the project) and ``iss``. A
deployed function never accepts these: it verifies Google's signature.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

ROLE_CLAIMS: dict[str, dict[str, Any]] = {
    "admin": {"admin": True},
    "ops": {"ops": True},
    "user": {},
    "verified": {"email_verified": True},
    "influencer": {"influencer": True, "email_verified": True},
    "service": {"service": True},
}
"""Custom claims for each role the CLI and tests can ask for."""


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def emulator_id_token(
    project: str, uid: str, claims: dict[str, Any] | None = None, lifetime_sec: int = 3600
) -> str:
    """An unsigned ID token for ``uid`` with ``claims``, valid for the local stack."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "auth_time": now,
        "user_id": uid,
        "sub": uid,
        "iat": now,
        "exp": now + lifetime_sec,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
        **(claims or {}),
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def role_token(project: str, role: str, uid: str | None = None) -> str:
    """A token for one of :data:`ROLE_CLAIMS`' roles (uid defaults to ``<role>-1``)."""
    if role not in ROLE_CLAIMS:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLE_CLAIMS)}")
    return emulator_id_token(project, uid or f"{role}-1", ROLE_CLAIMS[role])
