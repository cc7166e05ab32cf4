"""The local functions server: every ``pack391_*`` function at the emulator's URLs.

``POST /{project}/{region}/{name}`` runs the function exactly as deployed (the
same decorated handler, so the callable protocol, auth and errors are the real
ones): this is the URL scheme the Firebase client SDKs' ``connectFunctionsEmulator``
uses. Scheduled functions are served at the same scheme and run when called with
Cloud Scheduler's headers (``pack391 trigger`` and the local scheduler do that).

It also serves the ops page as Hosting does (its folder, headers, rewrites, the SDK 8 files
and ``/__/firebase/init.json``) and, when ``PACK391_AUTH_EMULATOR`` names a Firebase Auth
emulator (``pack391 serve`` starts one), proxies the emulator's paths on its own origin
(:func:`auth_emulator_proxy`): the page signs in with ``auth.useEmulator(location.origin)``.

Run: ``python -m stack.platform.server --port 5001`` from the source directory (main.py). No
per-request access log unless ``--access-log`` or ``PACK391_ACCESS_LOG=1``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import requests
from firebase_functions.private import serving
from werkzeug.exceptions import NotFound
from werkzeug.serving import make_server

from shared.config import FUNCTIONS_REGION, project_id
from stack.platform import auth_emulator
from stack.platform.procs import access_log_wanted

log = logging.getLogger("pack391.server")

HOSTING_DIR = Path(__file__).resolve().parents[2] / "hosting"
"""The Firebase Hosting folder (firebase.json ``hosting.public``), served at ``/`` locally."""

FIREBASE_JSON = HOSTING_DIR.parent / "firebase.json"
"""Hosting's headers and rewrites come from here, so the local page runs under the same
Content-Security-Policy and serves the same function rewrites (``/<name>``) as in production."""

REHEARSAL_DIR = HOSTING_DIR.parent / ".local" / "rehearse"
"""Where ``pack391 rehearse`` writes its reports by default (``--out``)."""

REHEARSAL_PAGE = "/rehearsal/"
"""Where the local stack serves the latest rehearsal report, linked from the ops page."""

OPS_PAGE = "/ops/"
"""Where the ops dashboard page is (``hosting/ops/index.html``)."""

FIREBASE8_DIR = HOSTING_DIR.parent / "tools" / "node_modules" / "firebase8"
"""The Firebase JS SDK 8 that ``package.json`` installs (``"firebase8": "npm:firebase@8.10.1"``):
its UMD builds are what Hosting serves at its reserved ``/__/firebase/<version>/<file>``
URLs (Hosting serves SDK 8 and earlier only there), so the local stack serves the same
files at the same URLs."""

SDK_FILE = re.compile(r"firebase-[a-z0-9-]+\.js")
"""The SDK builds served at ``/__/firebase/<version>/`` (``firebase-app.js``, ...)."""

LOCAL_API_KEY = "local-api-key"
"""The ``apiKey`` of the local init.json: SDK 8's ``initializeApp`` needs one and the Auth
emulator takes any key (it never leaves this machine; Hosting's init.json has the real one)."""

AUTH_PROXY_TIMEOUT_SEC = 30.0

_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade")
)  # fmt: skip
_NOT_FORWARDED = _HOP_BY_HOP | {"content-length", "cookie", "accept-encoding"}
"""Request headers the proxy leaves out (the length is recomputed; the page's cookies are
not the emulator's business; requests asks for and undoes its own encoding). The Host is
forwarded: the emulator builds its links (``/emulator/action?...``) on it."""
_RETURNED = ("content-type", "cache-control", "location", "vary")
"""Response headers the proxy returns, with every ``access-control-*`` (CORS) header."""

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


def firebase8_version(sdk_dir: Path | None = None) -> str | None:
    """The installed SDK 8's version (``node_modules/firebase8/package.json``), or None."""
    try:
        package = json.loads(((sdk_dir or FIREBASE8_DIR) / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = package.get("version") if isinstance(package, dict) else None
    return version if isinstance(version, str) else None


def firebase_sdk_response(version: str, filename: str) -> flask.Response:
    """Hosting's reserved ``/__/firebase/<version>/<file>`` URLs, locally: the exact files
    of ``node_modules/firebase8`` when that is the version asked for; otherwise a 404 that
    says why (the page then shows that the SDK did not load)."""
    sdk_dir = FIREBASE8_DIR  # read per request: tests point it elsewhere
    installed = firebase8_version(sdk_dir)

    def not_found(reason: str) -> flask.Response:
        text = f"/__/firebase/{version}/{filename}: {reason}\n"
        return flask.make_response(text, 404, {"Content-Type": "text/plain; charset=utf-8"})

    if installed is None:
        return not_found(
            f"{sdk_dir} is missing: the local stack serves the Firebase JS SDK from "
            "tools/node_modules/firebase8 (tools/package.json); run `make setup` "
            "(npm ci in tools/)"
        )
    if version != installed:
        return not_found(
            f"the local stack serves only the installed Firebase JS SDK {installed} "
            f"(tools/node_modules/firebase8), not {version}"
        )
    if not SDK_FILE.fullmatch(filename) or not (sdk_dir / filename).is_file():
        return not_found(f"no such file in Firebase JS SDK {installed}")
    response = flask.send_from_directory(sdk_dir, filename, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response


def _auth_error(status: int, code: str, message: str) -> flask.Response:
    body = {"error": {"code": status, "status": code, "message": message}}
    return flask.make_response(flask.jsonify(body), status)


def auth_emulator_proxy(address: str | None) -> flask.Response:
    """The current request forwarded to the Auth emulator at ``address`` (method, path and
    query as received, body, headers but hop-by-hop ones and cookies) and its answer
    (status, body, content type, CORS and caching headers, a redirect's ``Location``).
    None: 503, the emulator is not running; 502 when it does not answer."""
    if address is None:
        return _auth_error(503, "UNAVAILABLE", auth_emulator.NOT_RUNNING)
    request = flask.request
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    target = raw if isinstance(raw, str) and raw.startswith("/") else request.full_path
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    try:
        answer = requests.request(
            request.method,
            f"http://{address}{target}",
            data=request.get_data(),
            headers=headers,
            allow_redirects=False,
            timeout=AUTH_PROXY_TIMEOUT_SEC,
        )
    except requests.RequestException as exc:
        return _auth_error(
            502, "UNAVAILABLE", f"the Firebase Auth emulator at {address} does not answer: {exc}"
        )
    response = flask.make_response(answer.content, answer.status_code)
    response.headers.remove("Content-Type")
    for key, value in answer.headers.items():
        if key.lower() in _RETURNED or key.lower().startswith("access-control-"):
            response.headers[key] = value
    return response


def create_app(functions: dict[str, Function], project: str) -> flask.Flask:
    app = flask.Flask("pack391-local")
    described = describe(functions)

    @app.get("/__/health")
    def health() -> flask.Response:
        return flask.jsonify(status="ok", project=project, functions=len(functions))

    @app.get("/__/functions")
    def listing() -> flask.Response:
        return flask.jsonify(project=project, functions=described)

    # The ops dashboard: the Hosting folder, and the config Hosting serves at
    # /__/firebase/init.json in production, plus where the local callables are: a path on
    # this origin (the page refuses anything else). The ops routes send firebase.json's
    # Hosting headers (its Content-Security-Policy included), the SDK is served at
    # Hosting's reserved URLs and the function rewrites (/<name>) are served too, so the
    # page runs locally as it does on Hosting.
    # With an Auth emulator configured (PACK391_AUTH_EMULATOR, read per request), the page
    # signs in through it with `auth.useEmulator(location.origin)`: its calls are proxied
    # below, so nothing leaves this origin (the page's CSP allows connect-src 'self').
    @app.get("/__/firebase/init.json")
    def firebase_init() -> flask.Response:
        config: dict[str, Any] = {
            "projectId": project,
            "apiKey": LOCAL_API_KEY,
            "pack391Local": True,
            "pack391FunctionsBase": f"/{project}/{FUNCTIONS_REGION.value}",
        }
        if auth_emulator.configured_address() is not None:
            config["pack391AuthEmulator"] = True
        if (REHEARSAL_DIR / "rehearsal.html").is_file():
            config["pack391RehearsalReport"] = REHEARSAL_PAGE
        return flask.jsonify(config)

    # The latest launch rehearsal's report (`pack391 rehearse`, .local/rehearse/), linked
    # from the ops page; outside /ops/**, so under the report's own rules, not the page's
    # CSP (the report is one self-contained file with its own style).
    @app.get(REHEARSAL_PAGE)
    def rehearsal_report() -> flask.Response:
        try:
            response = flask.send_from_directory(REHEARSAL_DIR, "rehearsal.html")
        except NotFound:
            body = "No rehearsal report yet: `make rehearse` writes one."
            return flask.make_response(body, 404, {"Content-Type": "text/plain; charset=utf-8"})
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    # The Auth emulator's endpoints on this origin (auth_emulator.PROXIED_PREFIXES), every
    # method (a CORS preflight too), without the Hosting headers of the page.
    def auth_proxy(rest: str) -> flask.Response:
        return auth_emulator_proxy(auth_emulator.configured_address())

    for number, prefix in enumerate(auth_emulator.PROXIED_PREFIXES):
        app.add_url_rule(
            f"{prefix}<path:rest>",
            f"auth_proxy_{number}",
            auth_proxy,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            provide_automatic_options=False,
        )

    # Hosting's reserved SDK URLs (the page loads /__/firebase/8.10.1/firebase-{app,auth,
    # functions}.js): the same files, from node_modules/firebase8.
    @app.get("/__/firebase/<version>/<filename>")
    def firebase_sdk(version: str, filename: str) -> flask.Response:
        return firebase_sdk_response(version, filename)

    hosting = hosting_config()

    def as_hosting(response: flask.Response) -> flask.Response:
        for key, value in hosting_headers(hosting, flask.request.path):
            response.headers[key] = value
        return response

    def rewrite(path: str) -> flask.Response:
        fn = functions.get(hosting_function_rewrite(hosting, path) or "")
        if fn is None:
            body = {"error": {"status": "NOT_FOUND", "message": "no rewrite for this path"}}
            return as_hosting(flask.make_response(flask.jsonify(body), 404))
        return as_hosting(fn(flask.request))

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

    # firebase.json hosting.rewrites to functions. The page's httpsCallable (SDK 8 with the
    # site's origin as custom domain) calls /<name> on the ops site; SDK 8 keeps only the
    # origin of a custom domain, so the rewrites are at the site's root.
    @app.route("/<name>", methods=["GET", "POST"])  # anything else at the root: a 404
    def root_rewrite(name: str) -> flask.Response:
        return rewrite(flask.request.path)

    @app.post("/ops/<path:path>")
    def ops_rewrite(path: str) -> flask.Response:
        return rewrite(flask.request.path)

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
    from stack.cli.processes import server_parser

    parser = server_parser()
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not access_log_wanted(args.access_log):
        # werkzeug logs one INFO line per request: off unless asked for
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
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
