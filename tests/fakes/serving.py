"""Run a fake API's Flask app on a free local port, in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import flask
from werkzeug.serving import make_server


@contextmanager
def served(app: flask.Flask) -> Iterator[str]:
    """The app's base URL while the block runs; the server stops after it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
