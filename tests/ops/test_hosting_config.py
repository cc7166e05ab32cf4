"""The ops page's Hosting configuration (firebase.json, .firebaserc), without a browser:
its own Hosting target, the Content-Security-Policy and the other headers for ``/ops/**``,
the rewrites that make the callables same-origin, the page's sources staying within that
policy, and the local server sending exactly the headers Hosting would and serving the
Firebase JS SDK at Hosting's reserved URLs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import flask
import pytest

import stack.platform.server
from stack.platform.server import (
    FIREBASE_JSON,
    hosting_config,
    hosting_function_rewrite,
    hosting_glob_matches,
    hosting_headers,
)
from tests.conftest import ROOT

OPS = ROOT / "hosting" / "ops"
PAGE_JS = {path.name: path.read_text() for path in sorted(OPS.glob("*.js"))}
"""The page's scripts (app.js and the modules it imports)."""
APP_JS = PAGE_JS["app.js"]
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


PAGE_CALLS = {
    "pack391_getOpsDashboard",
    "pack391_getHistoricalMetrics",
    "pack391_getOpsLive",
    "pack391_getOpsTimeline",
    "pack391_acknowledgeAlert",
    "pack391_manualScale",
    "pack391_liftBlock",
    "pack391_setAllowlist",
    "pack391_controlDeployment",
    "pack391_rollbackController",
    "pack391_emergencyPauseMarkets",
    "pack391_liftSloAction",
}
"""What the console reads (the first four) and the actions it offers."""


def called_functions() -> set[str]:
    pattern = re.compile(r"""["'](pack391_\w+)["']""")
    return {name for source in PAGE_JS.values() for name in pattern.findall(source)}


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
    """SDK 8's httpsCallable with the page's origin as custom domain posts to
    ``<origin>/<name>`` (it keeps only the origin: ``new URL(domain).origin``), so each
    function the page calls has a rewrite at the site's root."""
    config = hosting_config()
    names = called_functions()
    assert names == PAGE_CALLS
    for name in names:
        (rule,) = [r for r in config["rewrites"] if r["source"] == f"/{name}"]
        assert rule["function"] == {"functionId": name, "region": "us-central1"}
        assert hosting_function_rewrite(config, f"/{name}") == name
        assert name in functions
    assert {r["source"] for r in config["rewrites"]} == {f"/{n}" for n in names}
    assert hosting_function_rewrite(config, "/pack391_setGeoThrottle") is None
    assert hosting_function_rewrite(config, "/ops/api/pack391_getOpsDashboard") is None
    assert hosting_function_rewrite(config, "/ops/") is None
    # the custom domain is this origin; nothing comes from the query string
    assert "firebase.app().functions(location.origin)" in APP_JS
    for source in PAGE_JS.values():
        assert "URLSearchParams" not in source and "searchParams" not in source
        assert "cloudfunctions.net" not in source


def test_the_ops_page_deploys_to_its_own_hosting_target() -> None:
    """``"target": "ops"`` in firebase.json, mapped to a site in .firebaserc (for the demo
    project; a real project maps it with ``firebase target:apply hosting ops <site-id>``),
    so ``firebase deploy --only hosting:ops`` never lands on the project's default site."""
    assert hosting_config()["target"] == "ops"
    rc = json.loads((ROOT / ".firebaserc").read_text())
    project = rc["projects"]["default"]
    assert project == "demo-avalo"
    assert rc["targets"][project]["hosting"]["ops"] == ["demo-avalo-ops"]


def test_the_page_stays_within_the_policy() -> None:
    """Scripts only from this origin (Hosting's SDK 8 URLs and app.js), no inline script or
    style attribute, no <style> element: the policy needs no 'unsafe-inline'."""
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", INDEX_HTML, re.S)
    assert [re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts] == [  # type: ignore[union-attr]
        "/__/firebase/8.10.1/firebase-app.js",
        "/__/firebase/8.10.1/firebase-auth.js",
        "/__/firebase/8.10.1/firebase-functions.js",
        "app.js",
    ]
    assert all(body.strip() == "" for _, body in scripts)
    for source in (INDEX_HTML, *PAGE_JS.values()):
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
        ("POST", "/ops/api/pack391_getOpsDashboard"),  # no rewrite there: a 404, with them
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
    dashboard = client.post("/pack391_getOpsDashboard", json={"data": {}})
    assert dashboard.status_code == 401  # the real callable: no token, no data
    assert dashboard.get_json()["error"]["status"] == "UNAUTHENTICATED"
    assert client.get("/favicon.ico").status_code == 404
    for missing in ("/pack391_setGeoThrottle", "/ops/api/pack391_getOpsDashboard"):
        response = client.post(missing, json={"data": {}})
        assert response.status_code == 404
        assert response.get_json()["error"]["status"] == "NOT_FOUND"
    init = client.get("/__/firebase/init.json").get_json()
    assert init["pack391FunctionsBase"].startswith("/")
    assert not init["pack391FunctionsBase"].startswith("//")
    # the page's scripts get the right type, which nosniff relies on
    with client.get("/ops/app.js") as script, client.get("/ops/style.css") as style:
        assert (script.mimetype, style.mimetype) == ("text/javascript", "text/css")


SDK_DIR = ROOT / "tools" / "node_modules" / "firebase8"


@pytest.mark.parametrize("name", ["firebase-app.js", "firebase-auth.js", "firebase-functions.js"])
def test_the_local_server_serves_the_sdk_from_node_modules(app: flask.Flask, name: str) -> None:
    """Hosting's reserved /__/firebase/8.10.1/ URLs: the exact files of firebase@8.10.1."""
    assert json.loads((SDK_DIR / "package.json").read_text())["version"] == "8.10.1"
    with app.test_client().get(f"/__/firebase/8.10.1/{name}") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/javascript"
        assert response.get_data() == (SDK_DIR / name).read_bytes()


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/__/firebase/9.23.0/firebase-app.js", "serves only the installed Firebase JS SDK 8.10.1"),
        ("/__/firebase/8.10.1/firebase-nope.js", "no such file"),
        ("/__/firebase/8.10.1/package.json", "no such file"),
        ("/__/firebase/8.10.1/firebase-app.js.map", "no such file"),
        ("/__/firebase/8.10.1/..%2Fpackage.json", "Not Found"),
    ],
)
def test_the_local_server_refuses_other_sdk_urls(app: flask.Flask, path: str, why: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 404
    assert why in response.get_data(as_text=True)
    assert '"version"' not in response.get_data(as_text=True)


def test_without_node_modules_the_sdk_urls_say_what_to_do(
    app: flask.Flask, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        stack.platform.server, "FIREBASE8_DIR", tmp_path / "node_modules" / "firebase8"
    )
    response = app.test_client().get("/__/firebase/8.10.1/firebase-functions.js")
    assert response.status_code == 404
    text = response.get_data(as_text=True)
    assert "node_modules/firebase8" in text and "npm ci" in text


def test_firebase_json_is_the_file_the_server_reads() -> None:
    assert FIREBASE_JSON == ROOT / "firebase.json"
    assert json.loads(FIREBASE_JSON.read_text())["hosting"]["public"] == "hosting"


def test_the_latest_rehearsal_report_is_linked_when_there_is_one(
    app: flask.Flask, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """init.json names /rehearsal/ only when `pack391 rehearse` has written a report; the
    report is served there, outside /ops/** (its own style, not the page's CSP)."""
    monkeypatch.setattr(stack.platform.server, "REHEARSAL_DIR", tmp_path)
    client = app.test_client()
    assert "pack391RehearsalReport" not in client.get("/__/firebase/init.json").get_json()
    missing = client.get("/rehearsal/")
    assert missing.status_code == 404 and "make rehearse" in missing.get_data(as_text=True)
    (tmp_path / "rehearsal.html").write_text("<!doctype html><title>rehearsal</title>")
    init = client.get("/__/firebase/init.json").get_json()
    assert init["pack391RehearsalReport"] == "/rehearsal/"
    with client.get("/rehearsal/") as report:
        assert report.status_code == 200 and report.mimetype == "text/html"
        assert b"<title>rehearsal</title>" in report.get_data()
        assert "Content-Security-Policy" not in report.headers
    assert client.get("/rehearsal/../hosting").status_code == 404
