"""The ops page in a real headless Chromium (Debian's package, driven by Playwright)
against the local functions server over HTTP, with seeded data: the numbers shown are
the function's, and a screenshot goes to .local/ops-dashboard.png.

The page runs under the production Content-Security-Policy (the local server sends
firebase.json's Hosting headers) with the real Firebase JS SDK 8.10.1 (served at Hosting's
reserved /__/firebase/8.10.1/ URLs from node_modules/firebase8), every request it makes is
recorded, and none may leave the page's origin: not with ``?region=`` in the URL, and not
when init.json names another origin as the functions base.

Both places the page runs sign in through Firebase Auth and call with the SDK's
httpsCallable: locally, a person's email and password through a real Firebase Auth
emulator behind the local server's origin (the role granted by ``pack391 grant``'s code);
as Hosting serves it, Hosting's init.json replaces the local one, and the two Google
Identity Toolkit calls of ``signInWithCustomToken`` are answered by the test: the user's
ID token is then an emulator token the local functions accept, so the SDK really calls the
functions through the same-origin rewrites."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

import stack.platform.server
from functions.ops.policy import flatten
from functions.ops.wiring import ops_service
from shared import collections
from shared.firestore import get_db
from shared.models.ops import LiveMetrics
from shared.models.scaling import IsolationState
from stack.ops_seed import SeedSpec, seed
from stack.platform.server import hosting_config, hosting_headers
from tests.conftest import PROJECT, AuthEmulator, Backends, Caller
from tests.ops.browser import (
    LIVE,
    LOCAL_BASE,
    LOCAL_SHOTS,
    POLLED,
    PRODUCTION_INIT,
    READS,
    SDK_DIR,
    SDK_FILES,
    Watched,
    assert_sdk_served_locally,
    is_google,
    next_load,
    open_on_hosting,
    open_page,
    sign_in_with_password,
)
from tests.ops.helpers import ddos_mode_on, register_service, staff_user

OPS_CALLS = READS + LIVE
"""What a signed-in page calls on its first load."""


def first_load(origin: str, base: str) -> list[str]:
    """The URLs of :data:`OPS_CALLS` but the polled one, sorted."""
    return sorted(f"{origin}{base}/{name}" for name in OPS_CALLS if name != POLLED)


def signed_in(
    browser: Browser, url: str, emulator: AuthEmulator, backends: Backends, role: str | None
) -> Watched:
    """The page as the local stack serves it, signed in on the page as a person with
    ``role`` (None: a plain user)."""
    email = f"{role or 'plain'}@example.com"
    password = staff_user(emulator, backends, email, role)
    watched = open_page(browser, url)
    assert watched.page.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    sign_in_with_password(watched, email, password)
    return watched


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
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    proxied_auth_emulator: AuthEmulator,
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
    for minutes in range(-12, 1):  # a history to chart (the real update, once a minute)
        moment = now + timedelta(minutes=minutes)
        for _ in range(minutes % 4):  # some users come and go: the charts move
            users.document().set({"lastActiveAt": moment - timedelta(minutes=14)})
        service.update(moment, f"run{minutes}")
    dash = caller.call("pack391_getOpsDashboard", role="ops").result
    want = flatten(LiveMetrics.model_validate(dash["live"]["metrics"]))

    watched = signed_in(browser, f"{live_server}/ops/", proxied_auth_emulator, backends, "ops")
    page = watched.page
    assert page.get_attribute("body", "data-error") is None
    assert page.inner_text("#who") == "ops@example.com · ops"
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
    assert "traffic_spike" in page.inner_text("#detections")
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
    # each once on the first load (the live part maybe again: it polls every 5 s)
    assert sorted(watched.posts(polls=False)) == first_load(live_server, LOCAL_BASE)
    assert POLLED in watched.called()
    assert_sdk_served_locally(watched)
    LOCAL_SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(LOCAL_SHOTS / "ops-dashboard.png"), full_page=True)
    page.close()


def test_a_plain_user_sees_the_refusal(
    browser: Browser, live_server: str, backends: Backends, proxied_auth_emulator: AuthEmulator
) -> None:
    """Signed out, the page asks to sign in and calls nothing; a plain user's sign-in (the
    Auth emulator's own user, no staff claim) is refused by the functions, and the page says
    so and how to get access."""
    anonymous = open_page(browser, f"{live_server}/ops/")
    page = anonymous.page
    assert page.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    assert page.inner_text("#message") == "Sign in to see the ops console."
    assert page.is_visible("#email") and page.is_visible("#signinPassword")
    assert page.is_visible("#emulatorNote")
    assert anonymous.posts() == []
    page.close()
    watched = signed_in(browser, f"{live_server}/ops/", proxied_auth_emulator, backends, None)
    page = watched.page
    assert page.get_attribute("body", "data-error") == "PERMISSION_DENIED"
    message = page.inner_text("#message")
    assert "for the ops team" in message and "pack391 grant --role ops EMAIL" in message
    assert "(permission-denied)" in message
    assert page.is_hidden("#dashboard")
    assert page.inner_text("#who") == "plain@example.com · no staff role"
    # refused once, then once more with a fresh token (a role granted since sign-in)
    assert watched.called().count("pack391_getOpsDashboard") == 2
    assert watched.off_origin(live_server) == []
    page.close()


def test_a_token_in_the_url_is_ignored_and_removed(
    browser: Browser, live_server: str, caller: Caller, proxied_auth_emulator: AuthEmulator
) -> None:
    page = open_page(browser, f"{live_server}/ops/?token={caller.token('ops')}").page
    assert page.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    assert page.url == f"{live_server}/ops/"
    assert page.evaluate("sessionStorage.length") == 0
    page.close()


# Same origin only --------------------------------------------------------


@pytest.mark.parametrize("hosting", ["local", "production"])
@pytest.mark.parametrize(
    "region", ["evil.example/", "https://evil.example/", "attacker.example%2F", "x@evil.example"]
)
def test_region_in_the_url_sends_nothing_off_origin(
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    proxied_auth_emulator: AuthEmulator,
    region: str,
    hosting: str,
) -> None:
    """``?region=`` once became the host the ID token was sent to (with Hosting's
    init.json, which has no functions base): nothing is taken from the query string."""
    seed_small_dashboard(datetime.now(UTC))
    url = f"{live_server}/ops/?region={region}"
    if hosting == "production":
        watched, google = open_on_hosting(browser, url, caller.token("ops"))
        base = ""  # httpsCallable with this origin as custom domain: /<name>, rewritten
        # Firebase Auth talked to Google (answered by the test) and to nothing else
        assert [u for u in watched.off_origin(live_server) if not is_google(u)] == []
        assert all(urlsplit(u).hostname == "www.googleapis.com" for u in google.seen)
    else:
        watched = signed_in(browser, url, proxied_auth_emulator, backends, "ops")
        base = LOCAL_BASE
        # sent nowhere else, and not even tried (the CSP would refuse and report an attempt)
        assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    assert_shows_data(watched.page)
    assert sorted(watched.posts(polls=False)) == first_load(live_server, base)
    assert POLLED in watched.called()
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
        "/ops/api",  # a path on this origin, but not /<project>/<region>
        f"/{PROJECT}/us-central1/more",
        42,
    ],
)
def test_an_off_origin_functions_base_is_refused(
    browser: Browser, live_server: str, caller: Caller, backends: Backends, base: object
) -> None:
    init = {
        "projectId": PROJECT,
        "apiKey": "local-api-key",
        "pack391Local": True,
        "pack391AuthEmulator": True,
        "pack391FunctionsBase": base,
    }
    watched = open_page(browser, f"{live_server}/ops/", init_json=init)
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
    assert page.is_visible("#signout") and page.is_hidden("#email")
    calls = [r for r in watched.requests if r.method == "POST" and not is_google(r.url)]
    assert sorted(watched.posts(polls=False)) == first_load(live_server, "")
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
    next_load(page, before)
    assert_shows_data(page)
    # the second live read sends the etag it holds and is answered notModified
    assert len(watched.posts(polls=False)) == 2 * len(first_load(live_server, ""))
    lives = [r for r in watched.requests if r.url.endswith("/pack391_getOpsLive")]
    assert "etag" not in json.loads(lives[0].post_data or "")["data"]
    assert json.loads(lives[1].post_data or "")["data"]["etag"]
    second = lives[1].response()
    assert second is not None and second.json()["result"]["notModified"] is True
    # signing out: the page asks to sign in and calls nothing
    page.click("#signout")
    page.wait_for_selector("body[data-error='UNAUTHENTICATED']")
    assert page.inner_text("#message") == "Sign in to see the ops console."
    assert page.is_visible("#signin")
    assert len(watched.posts(polls=False)) == 2 * len(first_load(live_server, ""))
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
    next_load(page, before)
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


def test_locally_errors_are_shown_as_on_hosting(
    browser: Browser, live_server: str, backends: Backends, proxied_auth_emulator: AuthEmulator
) -> None:
    """Signed in through the Auth emulator, the page calls with the same httpsCallable and
    shows a refusal the same way: code, message, details."""
    seed_small_dashboard(datetime.now(UTC))
    watched = signed_in(browser, f"{live_server}/ops/", proxied_auth_emulator, backends, "ops")
    page = watched.page
    assert_shows_data(page)
    page.evaluate("document.getElementById('range').add(new Option('2 years', '2y'))")
    before = page.get_attribute("body", "data-loaded")
    page.select_option("#range", "2y")
    next_load(page, before)
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
    """SDK 8's ``functions.useEmulator(host, port)``, which the page uses locally, posts to
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
    watched = open_page(browser, f"{live_server}/ops/", init_json=init)
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
    browser: Browser, live_server: str, backends: Backends, proxied_auth_emulator: AuthEmulator
) -> None:
    seed_small_dashboard(datetime.now(UTC))
    watched = signed_in(browser, f"{live_server}/ops/", proxied_auth_emulator, backends, "ops")
    page = watched.page
    assert_shows_data(page)
    loaded = page.get_attribute("body", "data-loaded")
    page.select_option("#range", "24h")  # a second render of every chart
    next_load(page, loaded)
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
