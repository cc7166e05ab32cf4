"""The ops page in a real headless Chromium (Debian's package, driven by Playwright)
against the local functions server over HTTP, with seeded data: the numbers shown are
the function's, and a screenshot goes to .local/ops-dashboard.png
(docs/ops-dashboard.png with PACK391_REFRESH_SCREENSHOT=1).

The page runs under the production Content-Security-Policy (the local server sends
firebase.json's Hosting headers) with the real Firebase JS SDK 8.10.1 (served at Hosting's
reserved /__/firebase/8.10.1/ URLs from node_modules/firebase8), every request it makes is
recorded, and none may leave the page's origin: not with ``?region=`` in the URL, and not
when init.json names another origin as the functions base.

Both ways the page calls are run: the local token mode (fetch, the pasted token), and
Hosting's (the SDK's httpsCallable with a Firebase Auth user). For the latter, Hosting's
init.json replaces the local one, and the two Google Identity Toolkit calls of
``signInWithCustomToken`` are answered by the test (no Auth emulator here): the user's ID
token is then an emulator token the local functions accept, so the SDK really calls the
functions through the same-origin rewrites."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright

import stack.platform.server
from functions.ops.policy import flatten
from functions.ops.wiring import ops_service
from shared import collections
from shared.firestore import get_db
from shared.models.ops import LiveMetrics
from shared.models.scaling import IsolationState
from stack.ops_seed import SeedSpec, seed
from stack.platform.server import hosting_config, hosting_headers
from tests.conftest import PROJECT, ROOT, Backends, Caller
from tests.needs import missing
from tests.ops.helpers import ddos_mode_on, register_service

CHROMIUM = os.environ.get("PACK391_CHROMIUM") or shutil.which("chromium")
"""Debian's chromium, or the browser ``PACK391_CHROMIUM`` names (GitHub's runners have
Google Chrome, not Debian's chromium)."""
SCREENSHOT = (
    ROOT / "docs" / "ops-dashboard.png"
    if os.environ.get("PACK391_REFRESH_SCREENSHOT") == "1"
    else ROOT / ".local" / "ops-dashboard.png"
)
"""The tracked docs/ops-dashboard.png changes only when asked for."""
LOCAL_SHOTS = ROOT / ".local"
"""Other screenshots (never tracked)."""
SDK_FILES = ("firebase-app.js", "firebase-auth.js", "firebase-functions.js")
SDK_DIR = ROOT / "tools" / "node_modules" / "firebase8"
LOCAL_BASE = f"/{PROJECT}/us-central1"
"""The local stack's functions (the emulator scheme /{project}/{region}/{name})."""
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Runs before the page's own scripts: records every CSP violation the browser reports.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    if CHROMIUM is None or not os.access(CHROMIUM, os.X_OK):
        missing(
            request.config,
            "BROWSER",
            "Debian's chromium is not installed: `make setup` installs it as root "
            "(apt-get install chromium), or set PACK391_CHROMIUM to a Chromium or Chrome",
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page with every request it made and every console message it printed."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def off_origin(self, origin: str) -> list[str]:
        return [r.url for r in self.requests if not same_origin(r.url, origin)]

    def posts(self) -> list[str]:
        """The calls to the functions (Google's Identity Toolkit, answered by the test
        in the Hosting mode, is not one of them)."""
        return [r.url for r in self.requests if r.method == "POST" and not is_google(r.url)]

    def sdk_loads(self) -> dict[str, int | None]:
        """The SDK files the page loaded and their HTTP status."""
        loads: dict[str, int | None] = {}
        for request in self.requests:
            path = urlsplit(request.url).path
            if path.startswith("/__/firebase/8.10.1/"):
                response = request.response()
                loads[path.rsplit("/", 1)[1]] = response.status if response else None
        return loads

    def csp_violations(self) -> list[str]:
        said = [
            text
            for text in self.console
            if "Content Security Policy" in text or "Refused to" in text
        ]
        reported: list[str] = self.page.evaluate("window.__cspViolations")
        return said + reported


def same_origin(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


GOOGLE_AUTH_HOSTS = {
    "www.googleapis.com",
    "identitytoolkit.googleapis.com",
    "securetoken.googleapis.com",
    "apis.google.com",
    f"{PROJECT}.firebaseapp.com",
}
"""Where Firebase Auth (SDK 8) talks to Google on Hosting: the only other hosts the CSP
allows. In these tests every such request is answered (or refused) by the test itself."""


def is_google(url: str) -> bool:
    return urlsplit(url).hostname in GOOGLE_AUTH_HOSTS


@dataclass
class FakeGoogleAuth:
    """Google's side of ``firebase.auth().signInWithCustomToken()`` (SDK 8: Identity
    Toolkit v3 ``verifyCustomToken`` then ``getAccountInfo``), answering with ``id_token``;
    anything else sent to Google is refused."""

    id_token: str
    uid: str = "ops-1"
    seen: list[str] = field(default_factory=list)

    def __call__(self, route: Route) -> None:
        url = route.request.url
        self.seen.append(url)
        path = urlsplit(url).path
        if path.endswith("/relyingparty/verifyCustomToken"):
            body: dict[str, object] = {
                "kind": "identitytoolkit#VerifyCustomTokenResponse",
                "idToken": self.id_token,
                "refreshToken": "fake-refresh-token",
                "expiresIn": "3600",
                "isNewUser": False,
            }
        elif path.endswith("/relyingparty/getAccountInfo"):
            body = {
                "kind": "identitytoolkit#GetAccountInfoResponse",
                "users": [{"localId": self.uid, "lastLoginAt": "1700000000000"}],
            }
        else:
            route.abort()
            return
        route.fulfill(
            status=200,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
            body=json.dumps(body),
        )


def open_page(
    browser: Browser,
    url: str,
    token: str | None = None,
    init_json: Mapping[str, object] | None = None,
    google: FakeGoogleAuth | None = None,
) -> Watched:
    """Open ``url``; ``token`` goes where the token field keeps it (sessionStorage), never
    in the URL; ``init_json`` replaces the server's /__/firebase/init.json; ``google``
    answers Firebase Auth's calls to Google."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watched = Watched(page)

    def on_request(request: Request) -> None:
        watched.requests.append(request)

    def on_console(message: ConsoleMessage) -> None:
        watched.console.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    page.add_init_script(script=WATCH_CSP)
    if token is not None:
        page.add_init_script(
            script=f"try {{ sessionStorage.setItem('pack391Token', {json.dumps(token)}); }} "
            "catch (e) {}"
        )
    if init_json is not None:
        body = json.dumps(init_json)

        def fulfil(route: Route) -> None:
            route.fulfill(status=200, content_type="application/json", body=body)

        page.route("**/__/firebase/init.json", fulfil)
    if google is not None:
        page.route(is_google, google)
    page.goto(url)
    page.wait_for_selector("body[data-loaded]", timeout=20_000)
    return watched


def sign_in(watched: Watched) -> None:
    """Sign in with Firebase Auth (SDK 8's own ``signInWithCustomToken``, Google's side
    faked) and wait for the page to load the dashboard as that user."""
    page = watched.page
    before = page.get_attribute("body", "data-loaded")
    signed_in = page.evaluate(
        "firebase.auth().signInWithCustomToken('test-custom-token').then(() => true)"
    )
    assert signed_in is True
    page.wait_for_selector(f"body:not([data-loaded='{before}'])", timeout=20_000)


def open_on_hosting(
    browser: Browser, url: str, id_token: str | None, uid: str = "ops-1"
) -> tuple[Watched, FakeGoogleAuth]:
    """The page as Hosting serves it (Hosting's init.json), signed in with ``id_token``
    through Firebase Auth (None: signed out)."""
    google = FakeGoogleAuth(id_token or "", uid)
    watched = open_page(browser, url, init_json=PRODUCTION_INIT, google=google)
    assert watched.page.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    if id_token is not None:
        sign_in(watched)
    return watched, google


def assert_sdk_served_locally(watched: Watched) -> None:
    """The page's SDK came from this origin at Hosting's URLs, served by the local stack."""
    assert watched.sdk_loads() == dict.fromkeys(SDK_FILES, 200)
    assert watched.page.evaluate("firebase.SDK_VERSION") == "8.10.1"


def seed_small_dashboard(now: datetime) -> None:
    """Seeded source collections and one live-metrics run: the page has numbers to show."""
    seed(get_db(), SeedSpec(), now)
    ops_service().update(now, "run0")


def assert_shows_data(page: Page) -> None:
    assert page.get_attribute("body", "data-error") is None, page.inner_text("#message")
    assert page.is_visible("#dashboard")
    assert page.inner_text("[data-metric='activeUsers']") == str(SeedSpec().active_users)
    assert page.query_selector_all("[data-chart]") != []


def test_dashboard_shows_the_functions_numbers(
    browser: Browser, live_server: str, caller: Caller, backends: Backends
) -> None:
    now = datetime.now(UTC)
    seed(get_db(), SeedSpec(), now)
    register_service("api-gateway", IsolationState.NONE, instances=4)
    register_service("chat-service", IsolationState.HALF_OPEN, instances=6)
    register_service("payments-service", IsolationState.OPEN, instances=2)
    ddos_mode_on(backends.redis_url, now + timedelta(minutes=10), "traffic spike")
    for country, status in (("PL", "soft_launch"), ("DE", "public")):
        config = {"launchStatus": status, "trafficLimit": 5000}
        caller.call("pack391_updateMarketControl", {"country": country, "config": config})
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=3)
    get_db().collection(collections.DDOS_DETECTIONS).document("d1").set(
        {
            "minute": minute,
            "kind": "traffic_spike",
            "severity": "critical",
            "evidence": {"ratio": 11.2},
            "mitigated": True,
            "detectedAt": minute + timedelta(seconds=15),
        }
    )
    service = ops_service()
    users = get_db().collection(collections.APP_USERS)
    for minutes in range(-30, 1):
        moment = now + timedelta(minutes=minutes)
        for _ in range(minutes % 4):  # some users come and go: the charts move
            users.document().set({"lastActiveAt": moment - timedelta(minutes=14)})
        service.update(moment, f"run{minutes}")
    dash = caller.call("pack391_getOpsDashboard", role="ops").result
    want = flatten(LiveMetrics.model_validate(dash["live"]["metrics"]))

    watched = open_page(browser, f"{live_server}/ops/", token=caller.token("ops"))
    page = watched.page
    assert page.get_attribute("body", "data-error") is None
    shown = {
        el.get_attribute("data-metric"): el.inner_text()
        for el in page.query_selector_all("[data-metric]")
    }
    assert set(shown) == set(want) - {"systemHealth.servicesDown"}
    for name, text in shown.items():
        assert name is not None
        assert float(text.replace(",", "")) == pytest.approx(want[name], abs=0.01), name
    assert page.inner_text("#health") == dash["live"]["metrics"]["systemHealth"]["status"]
    statuses = {
        el.get_attribute("data-service"): el.query_selector("[data-status]").get_attribute(  # type: ignore[union-attr]
            "data-status"
        )
        for el in page.query_selector_all("tr[data-service]")
    }
    assert statuses == {
        s["name"]: s["status"] for s in dash["live"]["metrics"]["systemHealth"]["services"]
    }
    alert_ids = [el.get_attribute("data-alert") for el in page.query_selector_all("tr[data-alert]")]
    assert alert_ids == [a["id"] for a in dash["openAlerts"]] and len(alert_ids) == 3
    assert page.get_attribute("[data-ddos-mode]", "data-ddos-mode") == "on"
    assert "traffic_spike" in page.inner_text("#ddos")
    assert [row.inner_text().split("\t")[0] for row in page.query_selector_all("#markets tr")][
        1:
    ] == ["DE", "PL"]
    # deployments, load tests and backups are all wired: none shows "not available"
    assert page.query_selector_all("[data-unavailable]") == []
    assert "none" in page.inner_text("#loadTests")
    assert int(page.get_attribute("#age", "data-age-sec") or "-1") < 60
    assert page.query_selector_all("[data-chart] polyline") != []
    assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    assert sorted(watched.posts()) == sorted(f"{live_server}{LOCAL_BASE}/{n}" for n in OPS_CALLS)
    assert_sdk_served_locally(watched)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


def test_non_ops_users_get_a_clear_message(
    browser: Browser, live_server: str, caller: Caller
) -> None:
    anonymous = open_page(browser, f"{live_server}/ops/").page
    assert anonymous.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    assert "Sign in" in anonymous.inner_text("#message")
    assert "token field" in anonymous.inner_text("#message")
    # the token field (local sign-in): typed in, kept in sessionStorage, never in the URL
    user_token = caller.token("user")  # once: a token carries the second it was made
    anonymous.fill("#token", user_token)
    anonymous.dispatch_event("#token", "change")
    # (no wait_for_function: Playwright evaluates its predicate with eval(), which the
    # page's CSP refuses, as it should)
    anonymous.wait_for_selector("body[data-error='PERMISSION_DENIED']")
    assert "for the ops team" in anonymous.inner_text("#message")
    assert anonymous.is_hidden("#dashboard")
    assert anonymous.evaluate("sessionStorage.getItem('pack391Token')") == user_token
    assert "token" not in anonymous.url
    anonymous.close()


def test_a_token_in_the_url_is_ignored_and_removed(
    browser: Browser, live_server: str, caller: Caller
) -> None:
    page = open_page(browser, f"{live_server}/ops/?token={caller.token('ops')}").page
    assert page.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    assert page.url == f"{live_server}/ops/"
    assert page.evaluate("sessionStorage.getItem('pack391Token')") is None
    page.close()


# Same origin only --------------------------------------------------------


PRODUCTION_INIT = {
    "projectId": PROJECT,
    "apiKey": "fake",
    "authDomain": f"{PROJECT}.firebaseapp.com",
}
"""What Hosting's /__/firebase/init.json looks like (no pack391 keys)."""

OPS_CALLS = ("pack391_getOpsDashboard", "pack391_getHistoricalMetrics")


@pytest.mark.parametrize("hosting", ["local", "production"])
@pytest.mark.parametrize(
    "region", ["evil.example/", "https://evil.example/", "attacker.example%2F", "x@evil.example"]
)
def test_region_in_the_url_sends_nothing_off_origin(
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    region: str,
    hosting: str,
) -> None:
    """The issue's attack: ``?region=`` used to become the host the ID token was sent to
    (with Hosting's init.json, which has no functions base)."""
    seed_small_dashboard(datetime.now(UTC))
    url = f"{live_server}/ops/?region={region}"
    if hosting == "production":
        watched, google = open_on_hosting(browser, url, caller.token("ops"))
        base = ""  # httpsCallable with this origin as custom domain: /<name>, rewritten
        # Firebase Auth talked to Google (answered by the test) and to nothing else
        assert [u for u in watched.off_origin(live_server) if not is_google(u)] == []
        assert all(urlsplit(u).hostname == "www.googleapis.com" for u in google.seen)
    else:
        watched = open_page(browser, url, token=caller.token("ops"))
        base = LOCAL_BASE
        # sent nowhere else, and not even tried (the CSP would refuse and report an attempt)
        assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    assert_shows_data(watched.page)
    assert sorted(watched.posts()) == sorted(f"{live_server}{base}/{name}" for name in OPS_CALLS)
    assert "region" not in watched.page.url
    watched.page.close()


@pytest.mark.parametrize(
    "base",
    [
        "https://evil.example",
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "evil.example/api",
        "javascript:alert(1)",
        "/ops/api?x=1",
        42,
    ],
)
def test_an_off_origin_functions_base_is_refused(
    browser: Browser, live_server: str, caller: Caller, backends: Backends, base: object
) -> None:
    init = {"projectId": PROJECT, "pack391Local": True, "pack391FunctionsBase": base}
    watched = open_page(browser, f"{live_server}/ops/", token=caller.token("ops"), init_json=init)
    page = watched.page
    assert page.get_attribute("body", "data-error") == "CONFIG"
    assert "Refusing the functions base" in page.inner_text("#message")
    assert page.is_hidden("#dashboard")
    page.click("#refresh")  # the button does not call anything either
    page.wait_for_timeout(300)
    assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    assert watched.posts() == []
    page.close()


def test_on_hosting_the_page_calls_through_https_callable(
    browser: Browser, live_server: str, caller: Caller, backends: Backends
) -> None:
    """Hosting's init.json (no pack391 keys): the SDK signs in with Firebase Auth and
    calls each function with httpsCallable, custom domain = this origin, so it posts
    ``{"data": ...}`` with the user's ID token to ``<origin>/<name>``, which firebase.json
    rewrites to the function (the local server serves the same rewrites)."""
    seed_small_dashboard(datetime.now(UTC))
    token = caller.token("ops")
    watched, google = open_on_hosting(browser, f"{live_server}/ops/", token)
    page = watched.page
    assert_shows_data(page)
    assert page.is_visible("#signout") and page.is_hidden("#token")
    calls = [r for r in watched.requests if r.method == "POST" and not is_google(r.url)]
    assert sorted(r.url for r in calls) == sorted(f"{live_server}/{n}" for n in OPS_CALLS)
    for request in calls:
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["content-type"] == "application/json"
        assert set(json.loads(request.post_data or "")) == {"data"}
        response = request.response()
        assert response is not None and response.status == 200
        # the rewrite's response, as Hosting would send it (no /ops/** headers there)
        assert "content-security-policy" not in response.headers
    assert [u for u in watched.off_origin(live_server) if not is_google(u)] == []
    assert {urlsplit(u).path.rsplit("/", 1)[1] for u in google.seen} == {
        "verifyCustomToken",
        "getAccountInfo",
    }
    assert watched.csp_violations() == []
    assert_sdk_served_locally(watched)
    LOCAL_SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(LOCAL_SHOTS / "ops-dashboard-hosting.png"), full_page=True)
    # a refresh goes the same way (the SDK refreshes nothing: the token is still fresh)
    before = page.get_attribute("body", "data-loaded")
    page.click("#refresh")
    page.wait_for_selector(f"body:not([data-loaded='{before}'])")
    assert_shows_data(page)
    assert len(watched.posts()) == 2 * len(OPS_CALLS)
    # signing out: the page asks to sign in and calls nothing
    page.click("#signout")
    page.wait_for_selector("body[data-error='UNAUTHENTICATED']")
    assert page.inner_text("#message") == "Sign in to see the ops dashboard."
    assert page.is_visible("#signin")
    assert len(watched.posts()) == 2 * len(OPS_CALLS)
    page.close()


def test_https_callable_errors_are_shown_with_code_message_and_details(
    browser: Browser, live_server: str, caller: Caller, backends: Backends
) -> None:
    seed_small_dashboard(datetime.now(UTC))
    watched, _ = open_on_hosting(browser, f"{live_server}/ops/", caller.token("user"), "user-1")
    page = watched.page
    assert page.get_attribute("body", "data-error") == "PERMISSION_DENIED"
    assert "for the ops team" in page.inner_text("#message")
    assert "(permission-denied)" in page.inner_text("#message")
    assert page.is_hidden("#dashboard")
    page.close()

    # an error with details (the function's INVALID_ARGUMENT for an unknown range)
    watched, _ = open_on_hosting(browser, f"{live_server}/ops/", caller.token("ops"))
    page = watched.page
    assert_shows_data(page)
    page.evaluate("document.getElementById('range').add(new Option('2 years', '2y'))")
    before = page.get_attribute("body", "data-loaded")
    page.select_option("#range", "2y")
    page.wait_for_selector(f"body:not([data-loaded='{before}'])")
    assert page.get_attribute("body", "data-error") == "INVALID_ARGUMENT"
    message = page.inner_text("#message")
    assert message.startswith("Could not load the dashboard (invalid-argument): range")
    details = json.loads(page.get_attribute("body", "data-error-details") or "null")
    assert details["field"] == "range" and details["requestId"]
    assert f'"requestId":"{details["requestId"]}"' in message
    assert watched.csp_violations() == []
    LOCAL_SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(LOCAL_SHOTS / "ops-dashboard-error.png"))
    page.close()


def test_the_token_mode_shows_errors_as_the_sdk_does(
    browser: Browser, live_server: str, caller: Caller, backends: Backends
) -> None:
    """The local token mode decodes errors like httpsCallable: same code, message, details."""
    seed_small_dashboard(datetime.now(UTC))
    watched = open_page(browser, f"{live_server}/ops/", token=caller.token("ops"))
    page = watched.page
    assert_shows_data(page)
    page.evaluate("document.getElementById('range').add(new Option('2 years', '2y'))")
    before = page.get_attribute("body", "data-loaded")
    page.select_option("#range", "2y")
    page.wait_for_selector(f"body:not([data-loaded='{before}'])")
    assert page.get_attribute("body", "data-error") == "INVALID_ARGUMENT"
    assert page.inner_text("#message").startswith(
        "Could not load the dashboard (invalid-argument): range"
    )
    details = json.loads(page.get_attribute("body", "data-error-details") or "null")
    assert details["field"] == "range" and details["requestId"]
    page.close()


def test_sdk_8_use_emulator_builds_the_local_stacks_urls(
    browser: Browser, live_server: str, caller: Caller
) -> None:
    """The token mode posts where SDK 8's ``functions.useEmulator(host, port)`` would:
    ``http://host:port/{projectId}/{region}/{name}``, the local stack's scheme. Checked with
    the real SDK on the page (its own httpsCallable, no user: UNAUTHENTICATED)."""
    watched = open_page(browser, f"{live_server}/ops/")
    page = watched.page
    code = page.evaluate(
        f"""() => {{
          const options = {{ projectId: {json.dumps(PROJECT)}, apiKey: "x" }};
          const app = firebase.initializeApp(options, "probe");
          const functions = app.functions("us-central1");
          functions.useEmulator(location.hostname, Number(location.port));
          return functions.httpsCallable("pack391_getOpsDashboard")({{}}).then(
            () => "ok", (err) => err.code);
        }}"""
    )
    assert code == "unauthenticated"
    sdk_posts = [u for u in watched.posts() if u.endswith("/pack391_getOpsDashboard")]
    assert sdk_posts[-1] == f"{live_server}{LOCAL_BASE}/pack391_getOpsDashboard"
    init = page.request.get(f"{live_server}/__/firebase/init.json").json()
    assert init["pack391FunctionsBase"] == LOCAL_BASE
    assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    page.close()


@pytest.mark.parametrize("hosting", ["local", "production"])
def test_without_node_modules_the_page_says_the_sdk_is_missing(
    browser: Browser,
    live_server: str,
    caller: Caller,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    hosting: str,
) -> None:
    monkeypatch.setattr(
        stack.platform.server, "FIREBASE8_DIR", tmp_path / "node_modules" / "firebase8"
    )
    init = PRODUCTION_INIT if hosting == "production" else None
    watched = open_page(browser, f"{live_server}/ops/", token=caller.token("ops"), init_json=init)
    page = watched.page
    assert page.get_attribute("body", "data-error") == "SDK"
    message = page.inner_text("#message")
    assert "Firebase JS SDK 8.10.1 did not load" in message and "npm ci" in message
    assert watched.sdk_loads() == dict.fromkeys(SDK_FILES, 404)
    missing = page.request.get(f"{live_server}/__/firebase/8.10.1/firebase-app.js")
    assert missing.status == 404 and "npm ci" in missing.text()
    assert watched.posts() == []
    assert watched.csp_violations() == []
    page.close()


def test_the_page_renders_under_the_production_csp(
    browser: Browser, live_server: str, caller: Caller, backends: Backends
) -> None:
    seed_small_dashboard(datetime.now(UTC))
    watched = open_page(browser, f"{live_server}/ops/", token=caller.token("ops"))
    page = watched.page
    assert_shows_data(page)
    loaded = page.get_attribute("body", "data-loaded")
    page.select_option("#range", "24h")  # a second render of every chart
    page.wait_for_selector(f"body:not([data-loaded='{loaded}'])")
    assert_shows_data(page)
    assert_sdk_served_locally(watched)
    for name in SDK_FILES:  # the exact files of node_modules/firebase8
        served = page.request.get(f"{live_server}/__/firebase/8.10.1/{name}")
        assert served.body() == (SDK_DIR / name).read_bytes()
    response = page.request.get(f"{live_server}/ops/")
    want = dict(hosting_headers(hosting_config(), "/ops/"))
    assert "Content-Security-Policy" in want
    assert {k: response.headers.get(k.lower()) for k in want} == want
    assert watched.csp_violations() == []
    assert watched.off_origin(live_server) == []
    # the policy is really enforced (so "no violations" means something): an inline style
    # attribute and a request to another origin are refused and reported
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.evaluate("fetch('https://evil.example/x').catch(() => null)")
    for _ in range(50):
        if len(watched.csp_violations()) >= 2:
            break
        page.wait_for_timeout(100)
    reported: list[str] = page.evaluate("window.__cspViolations")
    assert sorted(v.split()[0] for v in reported) == ["connect-src", "style-src-attr"]
    assert any("Refused to" in text for text in watched.console)
    page.close()
