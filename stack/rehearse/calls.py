"""Calling the stack as the app and the operators do: callables, scheduled runs, tokens."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stack.platform.handle import StackHandle
from stack.platform.scheduler import scheduler_headers
from stack.platform.tokens import emulator_id_token, role_token


@dataclass
class Answer:
    status: str
    """``OK``, the callable error status, or ``UNREACHABLE``."""
    result: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def post(
    url: str, body: Any, headers: dict[str, str], source_ip: str | None = None,
    timeout: float = 60.0,
) -> tuple[int | None, Any]:  # fmt: skip
    """One POST from ``source_ip`` (any 127.x.y.z is this machine); (HTTP status, JSON)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(
        u.hostname or "127.0.0.1", u.port, timeout=timeout,
        source_address=(source_ip, 0) if source_ip else None,
    )  # fmt: skip
    try:
        conn.request(
            "POST", u.path, json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    except (OSError, http.client.HTTPException, ValueError):
        return None, None
    finally:
        conn.close()


class Stack:
    """The callables of the stack, as the app and the operators call them."""

    def __init__(self, handle: StackHandle) -> None:
        self.h = handle
        self.admin = role_token(handle.project, "admin", "rehearsal-admin")
        self.ops = role_token(handle.project, "ops", "rehearsal-ops")

    def url(self, name: str) -> str:
        return f"{self.h.functions_url.rstrip('/')}/{self.h.project}/{self.h.region}/{name}"

    def call(
        self, name: str, data: Any, token: str | None = None, source_ip: str | None = None
    ) -> Answer:
        """A callable; the operators' own calls use the admin token (the staff bucket)."""
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        status, body = post(self.url(name), {"data": data}, headers, source_ip)
        if status is None or not isinstance(body, dict):
            return Answer("UNREACHABLE", message=f"HTTP {status}")
        if isinstance(body.get("error"), dict):
            err = body["error"]
            details = err.get("details") if isinstance(err.get("details"), dict) else {}
            return Answer(str(err.get("status")), {}, details, str(err.get("message", "")))
        result = body.get("result")
        return Answer("OK", result if isinstance(result, dict) else {"value": result})

    def must(self, name: str, data: Any, token: str | None = None) -> dict[str, Any]:
        answer = self.call(name, data, token)
        if answer.status != "OK":
            raise RuntimeError(f"{name}: {answer.status} {answer.message} {answer.details}")
        return answer.result

    def trigger(self, name: str) -> int | None:
        """A scheduled function run now, as Cloud Scheduler runs it (the backup only)."""
        headers = scheduler_headers(name, self.h.region, datetime.now(UTC))
        status, _ = post(self.url(name), {}, headers, timeout=600)
        return status

    def user(self, uid: str, **claims: Any) -> str:
        return emulator_id_token(self.h.project, uid, claims)
