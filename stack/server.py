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
import fnmatch
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from firebase_functions.private import serving
from werkzeug.exceptions import NotFound
from werkzeug.serving import make_server

from shared.config import FUNCTIONS_REGION, project_id

log = logging.getLogger("pack391.server")

HOSTING_DIR = Path(__file__).resolve().parent.parent / "hosting"
"""The Firebase Hosting folder (firebase.json ``hosting.public``), served at ``/`` locally."""

FIREBASE_JSON = HOSTING_DIR.parent / "firebase.json"
"""Hosting's headers and rewrites come from here, so the local page runs under the same
Content-Security-Policy and calls the same ``/ops/api/<name>`` paths as in production."""

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


# Firebase Hosting's matching of firebase.json ``source``/``glob`` and ``regex`` keys
# (superstatic's ``configMatcher``: minimatch with its default options, or a regular
# expression searched in the path), for headers and rewrites.


def _segment_matches(pattern: str, segment: str) -> bool:
    if segment.startswith(".") and not pattern.startswith("."):
        return False  # minimatch without {dot: true}: wildcards never match a leading dot
    return re.fullmatch(fnmatch.translate(pattern), segment) is not None


def _segments_match(patterns: list[str], segments: list[str]) -> bool:
    if not patterns:
        return not segments
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        for taken in range(len(segments) + 1):
            if any(s.startswith(".") for s in segments[:taken]):
                break
            if _segments_match(rest, segments[taken:]):
                return True
        return False
    return (
        bool(segments)
        and _segment_matches(head, segments[0])
        and (_segments_match(rest, segments[1:]))
    )


def _expand_braces(glob: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", glob)
    if match is None:
        return [glob]
    return [
        expanded
        for option in match.group(1).split(",")
        for expanded in _expand_braces(glob[: match.start()] + option + glob[match.end() :])
    ]


def hosting_glob_matches(glob: str, path: str) -> bool:
    """Whether Hosting applies a ``source`` glob to a request path (``/ops/**`` matches
    ``/ops``, ``/ops/`` and everything below; ``*`` stays within one path segment)."""
    glob = glob if glob.startswith("/") else "/" + glob
    return any(_segments_match(g.split("/"), path.split("/")) for g in _expand_braces(glob))


def _rule_matches(rule: dict[str, Any], path: str) -> bool:
    glob = rule.get("glob", rule.get("source"))
    if isinstance(glob, str):
        return hosting_glob_matches(glob, path)
    regex = rule.get("regex")
    return isinstance(regex, str) and re.search(regex, path) is not None


def hosting_config(path: Path = FIREBASE_JSON) -> dict[str, Any]:
    """The ``hosting`` section of firebase.json."""
    config: dict[str, Any] = json.loads(path.read_text())["hosting"]
    return config


def hosting_headers(config: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """The headers Hosting adds to a response for ``path``: every matching rule's, in order."""
    return [
        (str(header["key"]), str(header["value"]))
        for rule in config.get("headers", [])
        if _rule_matches(rule, path)
        for header in rule.get("headers", [])
    ]


def hosting_function_rewrite(config: dict[str, Any], path: str) -> str | None:
    """The function id the first matching rewrite sends ``path`` to (None: no rewrite, or
    the first match is not a function). ``function`` is a name or ``{functionId, region,
    pinTag}``."""
    for rule in config.get("rewrites", []):
        if _rule_matches(rule, path):
            target = rule.get("function")
            if isinstance(target, dict):
                target = target.get("functionId")
            return target if isinstance(target, str) else None
    return None


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
    # /__/firebase/init.json in production, plus where the local callables are: a path on
    # this origin (the page refuses anything else). The ops routes send firebase.json's
    # Hosting headers (its Content-Security-Policy included) and serve its function
    # rewrites (/ops/api/<name>), so the page runs locally as it does on Hosting.
    @app.get("/__/firebase/init.json")
    def firebase_init() -> flask.Response:
        return flask.jsonify(
            projectId=project,
            pack391Local=True,
            pack391FunctionsBase=f"/{project}/{FUNCTIONS_REGION.value}",
        )

    hosting = hosting_config()

    def as_hosting(response: flask.Response) -> flask.Response:
        for key, value in hosting_headers(hosting, flask.request.path):
            response.headers[key] = value
        return response

    @app.get("/ops")
    def ops_redirect() -> flask.Response:
        return as_hosting(flask.make_response("", 308, {"Location": OPS_PAGE}))

    @app.get("/ops/")
    def ops_index() -> flask.Response:
        return ops_page("index.html")

    @app.get("/ops/<path:path>")
    def ops_page(path: str) -> flask.Response:
        try:
            return as_hosting(flask.send_from_directory(HOSTING_DIR / "ops", path))
        except NotFound:
            return as_hosting(flask.make_response("Not Found", 404))

    # firebase.json hosting.rewrites to functions (production: /ops/api/<name>, same origin).
    @app.post("/ops/<path:path>")
    def ops_rewrite(path: str) -> flask.Response:
        fn = functions.get(hosting_function_rewrite(hosting, flask.request.path) or "")
        if fn is None:
            body = {"error": {"status": "NOT_FOUND", "message": "no rewrite for this path"}}
            return as_hosting(flask.make_response(flask.jsonify(body), 404))
        return as_hosting(fn(flask.request))

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
