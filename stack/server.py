"""The local functions server: every ``pack391_*`` function at the emulator's URLs.

``POST /{project}/{region}/{name}`` runs the function exactly as deployed (the
same decorated handler, so the callable protocol, auth and errors are the real
ones): this is the URL scheme the Firebase client SDKs' ``connectFunctionsEmulator``
uses. Scheduled functions are served at the same scheme and run when called with
Cloud Scheduler's headers (``pack391 trigger`` and the local scheduler do that).

Run: ``python -m stack.server --port 5001`` from the source directory (main.py).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from firebase_functions.private import serving
from werkzeug.serving import make_server

from shared.config import FUNCTIONS_REGION, project_id

log = logging.getLogger("pack391.server")

HOSTING_DIR = Path(__file__).resolve().parent.parent / "hosting"
"""The Firebase Hosting folder (firebase.json ``hosting.public``), served at ``/`` locally."""

OPS_PAGE = "/ops/"
"""Where the ops dashboard page is (``hosting/ops/index.html``)."""

Function = Callable[[flask.Request], flask.Response]


def load_functions() -> dict[str, Function]:
    """The functions of ``main.py`` in the working directory, as ``firebase deploy`` finds them."""
    found: dict[str, Function] = serving.get_functions()  # type: ignore[no-untyped-call]
    return found


def describe(functions: dict[str, Function]) -> dict[str, dict[str, Any]]:
    """Name -> trigger kind (and schedule) from each function's manifest entry."""
    described: dict[str, dict[str, Any]] = {}
    for name, fn in functions.items():
        endpoint: Any = fn.__firebase_endpoint__  # type: ignore[attr-defined]
        schedule = getattr(endpoint, "scheduleTrigger", None)
        if schedule:
            described[name] = {
                "trigger": "schedule",
                "schedule": schedule.get("schedule"),
                "timeZone": schedule.get("timeZone"),
            }
        elif getattr(endpoint, "callableTrigger", None) is not None:
            described[name] = {"trigger": "callable"}
        else:
            described[name] = {"trigger": "other"}
    return described


def create_app(functions: dict[str, Function], project: str) -> flask.Flask:
    app = flask.Flask("pack391-local")
    described = describe(functions)

    @app.get("/__/health")
    def health() -> flask.Response:
        return flask.jsonify(status="ok", project=project, functions=len(functions))

    @app.get("/__/functions")
    def listing() -> flask.Response:
        return flask.jsonify(project=project, functions=described)

    # The ops dashboard (issue 7): the Hosting folder, and the config Hosting serves at
    # /__/firebase/init.json in production, plus where the local callables are.
    @app.get("/__/firebase/init.json")
    def firebase_init() -> flask.Response:
        return flask.jsonify(
            projectId=project,
            pack391Local=True,
            pack391FunctionsBase=f"/{project}/{FUNCTIONS_REGION.value}",
        )

    @app.get("/ops")
    def ops_redirect() -> flask.Response:
        return flask.make_response("", 308, {"Location": OPS_PAGE})

    @app.get("/ops/", defaults={"path": "index.html"})
    @app.get("/ops/<path:path>")
    def ops_page(path: str) -> flask.Response:
        response = flask.send_from_directory(HOSTING_DIR / "ops", path)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.route("/<proj>/<region>/<name>", methods=["POST", "OPTIONS", "GET"])
    def invoke(proj: str, region: str, name: str) -> flask.Response:
        fn = functions.get(name)
        if proj != project or fn is None:
            body = {
                "error": {"status": "NOT_FOUND", "message": f"no function {proj}/{region}/{name}"}
            }
            return flask.make_response(flask.jsonify(body), 404)
        response: flask.Response = fn(flask.request)
        return response

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PACK391_PORT", "5001")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    functions = load_functions()
    app = create_app(functions, project_id())
    server = make_server(args.host, args.port, app, threaded=True)
    log.info(
        "serving %d functions at http://%s:%d/%s/%s/<name>",
        len(functions),
        args.host,
        args.port,
        project_id(),
        FUNCTIONS_REGION.value,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
