"""What the edge writes back itself: a handler's result as plain JSON (:func:`to_wire`), a
callable error in the callable protocol's format when a request is refused before the SDK
sees it (:func:`error_response`), and a scheduled function's answer to what is not a run
(:func:`not_a_run`)."""

from __future__ import annotations

import json
from typing import Any

import flask
from firebase_functions import https_fn
from pydantic import BaseModel

from shared.edge_errors import http_status_of
from shared.edge_request import leave_body_unread


def to_wire(result: Any) -> Any:
    """Handler results as plain JSON: models dumped by alias with ISO timestamps."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    if isinstance(result, list):
        return [to_wire(item) for item in result]
    if isinstance(result, dict):
        return {key: to_wire(value) for key, value in result.items()}
    return result


def error_response(
    code: https_fn.FunctionsErrorCode, message: str, details: dict[str, Any] | None = None
) -> flask.Response:
    """A callable error ``{"error": {"status", "message", "details"}}`` with its HTTP
    status, written by the edge itself (the request goes no further)."""
    leave_body_unread()  # every caller refuses the request here: nothing reads it later
    status, http_status = http_status_of(code)
    error: dict[str, Any] = {"status": status, "message": message}
    if details:
        error["details"] = details
    body = json.dumps({"error": error})
    response = flask.Response(body, status=http_status, mimetype="application/json")
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def not_a_run(method: str, name: str) -> flask.Response:
    """The answer to a request that is not a scheduler run (a health check): 200, nothing run."""
    body = {"ran": False, "note": f"{name} runs only on a POST from the scheduler, not a {method}"}
    return flask.Response(json.dumps(body), status=200, mimetype="application/json")
