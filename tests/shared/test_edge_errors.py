"""The edge's own error answers follow the callable protocol exactly as the SDK does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import flask
import pytest
from firebase_functions import https_fn

from shared.edge_errors import HTTP_STATUS, http_status_of


def sdk_answer(code: https_fn.FunctionsErrorCode) -> tuple[int, dict[str, Any]]:
    """What the SDK itself answers when a callable raises ``HttpsError(code, ...)``."""

    @https_fn.on_call()
    def raises(req: https_fn.CallableRequest[Any]) -> Any:
        raise https_fn.HttpsError(code, "m")

    app = flask.Flask(__name__)
    with app.test_request_context("/", method="POST", json={"data": None}):
        endpoint = cast(Callable[[flask.Request], flask.Response], raises)
        response = endpoint(flask.request)
    return response.status_code, response.get_json()


def test_every_code_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(https_fn.FunctionsErrorCode)


@pytest.mark.parametrize("code", list(https_fn.FunctionsErrorCode), ids=str)
def test_the_edge_answers_as_the_sdk_does(code: https_fn.FunctionsErrorCode) -> None:
    status, body = sdk_answer(code)
    assert http_status_of(code) == (body["error"]["status"], status)
