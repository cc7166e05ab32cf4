"""Run a fake API's Flask app on a free local port, in a thread.

Requests that are Google API methods (:func:`tests.fakes.google_apis.rest_method`) are
recorded for ``tests/plugins/api_calls.py`` and checked against what ``pack391 bootstrap``
grants the method's caller (Google's 403 ``PERMISSION_DENIED`` when a permission is
missing), as :class:`tests.fakes.http_api.FakeHttpApi` does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import flask
from werkzeug.serving import make_server

from tests.fakes import google_apis


def _checked(app: flask.Flask) -> Any:
    wsgi = app.wsgi_app

    def gate(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = google_apis.rest_method(environ.get("REQUEST_METHOD", "GET"), path)
        if method is not None:
            google_apis.record(method)
            lacking = google_apis.refusal(method, None)
            if lacking is not None:
                status, body = google_apis.rest_denied(lacking, google_apis.resource_of(path))
                start_response(f"{status} Forbidden", [("Content-Type", "application/json")])
                return [json.dumps(body).encode()]
        result: Iterable[bytes] = wsgi(environ, start_response)
        return result

    return gate


@contextmanager
def served(app: flask.Flask) -> Iterator[str]:
    """The app's base URL while the block runs; the server stops after it."""
    app.wsgi_app = _checked(app)  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
