"""The ops page's Hosting configuration (firebase.json), without a browser: the
Content-Security-Policy and the other headers for ``/ops/**``, the rewrites that make the
callables same-origin, the page's sources staying within that policy, and the local
server sending exactly the headers Hosting would."""

from __future__ import annotations

import json
import re
from typing import Any

import flask
import pytest

from stack.server import (
    FIREBASE_JSON,
    hosting_config,
    hosting_function_rewrite,
    hosting_glob_matches,
    hosting_headers,
)
from tests.conftest import ROOT

OPS = ROOT / "hosting" / "ops"
APP_JS = (OPS / "app.js").read_text()
INDEX_HTML = (OPS / "index.html").read_text()

REQUIRED_CSP = {
    "default-src": {"'none'"},
    "script-src": {"'self'", "https://apis.google.com"},
    "connect-src": {
        "'self'",
        "https://identitytoolkit.googleapis.com",
        "https://securetoken.googleapis.com",
        # Firebase Auth SDK 8 (the only SDK Hosting serves) sends its RPCs to
        # www.googleapis.com/identitytoolkit/v3/relyingparty/...
        "https://www.googleapis.com",
    },
    "img-src": {"'self'", "data:"},
    "style-src": {"'self'"},
    "frame-src": {"'self'", "https://*.firebaseapp.com", "https://accounts.google.com"},
    "base-uri": {"'none'"},
    "form-action": {"'none'"},
    "frame-ancestors": {"'none'"},
    "object-src": {"'none'"},
}


def parse_csp(value: str) -> dict[str, set[str]]:
    directives: dict[str, set[str]] = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            assert words[0] not in directives, f"{words[0]} twice"
            directives[words[0]] = set(words[1:])
    return directives


def ops_rule() -> dict[str, Any]:
    (rule,) = [r for r in hosting_config()["headers"] if r.get("source") == "/ops/**"]
    found: dict[str, Any] = rule
    return found


def called_functions() -> set[str]:
    return set(re.findall(r"""\bcall\(\s*["'](pack391_\w+)["']""", APP_JS))


def test_firebase_json_gives_ops_pages_a_strict_csp() -> None:
    headers = {h["key"]: h["value"] for h in ops_rule()["headers"]}
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert parse_csp(headers["Content-Security-Policy"]) == REQUIRED_CSP
    assert "unsafe" not in headers["Content-Security-Policy"]


def test_every_function_the_page_calls_is_rewritten_same_origin(
    functions: dict[str, Any],
) -> None:
    config = hosting_config()
    names = called_functions()
    assert names == {"pack391_getOpsDashboard", "pack391_getHistoricalMetrics"}
    for name in names:
        (rule,) = [r for r in config["rewrites"] if r["source"] == f"/ops/api/{name}"]
        assert rule["function"] == {"functionId": name, "region": "us-central1"}
        assert hosting_function_rewrite(config, f"/ops/api/{name}") == name
        assert name in functions
    assert hosting_function_rewrite(config, "/ops/api/pack391_acknowledgeAlert") is None
    assert hosting_function_rewrite(config, "/ops/") is None
    # the production base is that same-origin prefix; nothing comes from the query string
    assert 'const PRODUCTION_BASE = "/ops/api";' in APP_JS
    assert "URLSearchParams" not in APP_JS and "searchParams" not in APP_JS
    assert "cloudfunctions.net" not in APP_JS


def test_the_page_stays_within_the_policy() -> None:
    """Scripts only from this origin (Hosting's SDK 8 URLs and app.js), no inline script or
    style attribute, no <style> element: the policy needs no 'unsafe-inline'."""
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", INDEX_HTML, re.S)
    assert [re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts] == [  # type: ignore[union-attr]
        "/__/firebase/8.10.1/firebase-app.js",
        "/__/firebase/8.10.1/firebase-auth.js",
        "app.js",
    ]
    assert all(body.strip() == "" for _, body in scripts)
    for source in (INDEX_HTML, APP_JS):
        assert not re.search(r"\sstyle\s*=", source)
        assert not re.search(r"\son[a-z]+\s*=\s*[\"']", source)  # no inline handlers
        assert "<style" not in source and "eval(" not in source
        assert "new Function" not in source


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/ops/**", "/ops", True),
        ("/ops/**", "/ops/", True),
        ("/ops/**", "/ops/app.js", True),
        ("/ops/**", "/ops/api/pack391_getOpsDashboard", True),
        ("/ops/**", "/opsx", False),
        ("/ops/**", "/", False),
        ("/ops/**", "/__/firebase/init.json", False),
        ("/ops/**", "/ops/.hidden", False),
        ("/ops/*", "/ops/api/x", False),
        ("**/*.@(js|css)", "/ops/app.js", False),  # extglobs are not supported here
        ("**/*.{js,css}", "/ops/app.js", True),
        ("**", "/anything/at/all", True),
    ],
)
def test_hosting_glob_matching(glob: str, path: str, matches: bool) -> None:
    assert hosting_glob_matches(glob, path) is matches


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ops/"),
        ("GET", "/ops/index.html"),
        ("GET", "/ops/app.js"),
        ("GET", "/ops/style.css"),
        ("GET", "/ops"),
        ("GET", "/ops/missing.js"),
        ("POST", "/ops/api/pack391_getOpsDashboard"),
    ],
)
def test_the_local_server_sends_firebase_jsons_headers(
    app: flask.Flask, method: str, path: str
) -> None:
    want = {h["key"]: h["value"] for h in ops_rule()["headers"]}
    with app.test_client().open(path, method=method, json={"data": {}}) as response:
        assert {key: response.headers.get(key) for key in want} == want
    assert hosting_headers(hosting_config(), path) == [(k, v) for k, v in want.items()]


def test_the_local_server_serves_the_rewrites_and_init_json(app: flask.Flask) -> None:
    client = app.test_client()
    dashboard = client.post("/ops/api/pack391_getOpsDashboard", json={"data": {}})
    assert dashboard.status_code == 401  # the real callable: no token, no data
    assert dashboard.get_json()["error"]["status"] == "UNAUTHENTICATED"
    missing = client.post("/ops/api/pack391_acknowledgeAlert", json={"data": {}})
    assert missing.status_code == 404
    init = client.get("/__/firebase/init.json").get_json()
    assert init["pack391FunctionsBase"].startswith("/")
    assert not init["pack391FunctionsBase"].startswith("//")
    # the page's scripts get the right type, which nosniff relies on
    with client.get("/ops/app.js") as script, client.get("/ops/style.css") as style:
        assert (script.mimetype, style.mimetype) == ("text/javascript", "text/css")


def test_firebase_json_is_the_file_the_server_reads() -> None:
    assert FIREBASE_JSON == ROOT / "firebase.json"
    assert json.loads(FIREBASE_JSON.read_text())["hosting"]["public"] == "hosting"
