"""Secret Manager: that every secret param exists before ``firebase deploy``, and
creating them (``pack391 deploy secrets [--create]``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from stack.release.shape import secret_in_use

SECRET_MANAGER = "https://secretmanager.googleapis.com"
"""Secret Manager's REST endpoint (PACK391_SECRET_MANAGER_URL overrides it, for tests)."""

# ------------------------------------------------------------------ Secret Manager


PLACEHOLDER = "unused"
"""What ``--create`` stores for a secret nothing binds: Secret Manager refuses an empty
payload, so "empty" cannot be stored."""


def create_secrets(
    params: Sequence[Mapping[str, Any]],
    project: str,
    session: Any,
    given: Mapping[str, str],
    values: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """``deploy secrets --create``: upload each secret param's value from ``given`` (the
    environment variable of its own name) as a new version, creating the secret when it is
    missing (automatic replication, as ``firebase functions:secrets:set`` does). A missing
    secret that nothing binds under ``values`` (the deploy's env file: see
    :data:`OPTIONAL_SECRETS`) and has no value gets :data:`PLACEHOLDER`. Answers what was
    done and the problems (a secret in use with no value and none stored)."""
    import base64

    base = os.environ.get("PACK391_SECRET_MANAGER_URL", SECRET_MANAGER).rstrip("/")
    done: list[str] = []
    problems: list[str] = []
    for param in params:
        if param.get("type") != "secret":
            continue
        name = str(param.get("resourceId") or param.get("name"))
        secret = f"{base}/v1/projects/{project}/secrets/{name}"
        value = given.get(name) or ""
        exists = session.get(secret, timeout=30).status_code == 200
        if not value:
            if exists:
                continue
            if secret_in_use(name, values):
                problems.append(f"{name}: no such secret and no value: set the environment "
                                f"variable {name} and run again")  # fmt: skip
                continue
            value = PLACEHOLDER
        if not exists:
            created = session.post(
                f"{base}/v1/projects/{project}/secrets",
                params={"secretId": name},
                json={"replication": {"automatic": {}}},
                timeout=30,
            )
            if created.status_code != 200:
                problems.append(f"{name}: creating it answered HTTP {created.status_code}: "
                                f"{created.text[:300]}")  # fmt: skip
                continue
        payload = {"payload": {"data": base64.b64encode(value.encode()).decode()}}
        added = session.post(f"{secret}:addVersion", json=payload, timeout=30)
        if added.status_code != 200:
            problems.append(f"{name}: adding a version answered HTTP {added.status_code}: "
                            f"{added.text[:300]}")  # fmt: skip
            continue
        what = "placeholder (not bound)" if value == PLACEHOLDER else "value uploaded"
        done.append(f"{name}: {'created, ' if not exists else ''}{what}")
    return done, problems


def missing_secrets(params: Sequence[Mapping[str, Any]], project: str, session: Any) -> list[str]:
    """What ``firebase deploy --non-interactive`` would stop at: each secret param whose
    latest version does not exist or is not enabled (firebase-tools ``ensureSecret``)."""
    base = os.environ.get("PACK391_SECRET_MANAGER_URL", SECRET_MANAGER).rstrip("/")
    problems: list[str] = []
    for param in params:
        if param.get("type") != "secret":
            continue
        name = str(param.get("resourceId") or param.get("name"))
        response = session.get(
            f"{base}/v1/projects/{project}/secrets/{name}/versions/latest", timeout=30
        )
        if response.status_code == 404:
            problems.append(f"{name}: no such secret (firebase functions:secrets:set {name})")
        elif response.status_code != 200:
            problems.append(f"{name}: Secret Manager answered HTTP {response.status_code}: "
                            f"{response.text[:300]}")  # fmt: skip
        elif response.json().get("state") != "ENABLED":
            problems.append(f"{name}: the latest version is {response.json().get('state')} "
                            f"(firebase functions:secrets:set {name})")  # fmt: skip
    return problems
