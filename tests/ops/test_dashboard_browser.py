"""The ops page in a real headless Chromium (Debian's package, driven by Playwright)
against the local functions server over HTTP, with seeded data: the numbers shown are
the function's, and a screenshot goes to docs/ops-dashboard.png.

The page runs under the production Content-Security-Policy (the local server sends
firebase.json's Hosting headers), every request it makes is recorded, and none may
leave the page's origin: not with ``?region=`` in the URL, and not when init.json names
another origin as the functions base."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright

from functions.ops import ops_service
from functions.ops.policy import flatten
from shared import collections
from shared.firestore import get_db
from shared.models.ops import LiveMetrics
from shared.models.scaling import IsolationState
from stack.ops_seed import SeedSpec, seed
from stack.server import hosting_config, hosting_headers
from tests.conftest import PROJECT, ROOT, Backends, Caller
from tests.ops.helpers import ddos_mode_on, register_service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "ops-dashboard.png"
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
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.skip(
            "Debian's chromium is not installed and `make setup` could not install it "
            "(it needs root and apt-get)"
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
        return [r.url for r in self.requests if r.method == "POST"]

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


def open_page(
    browser: Browser,
    url: str,
    token: str | None = None,
    init_json: Mapping[str, object] | None = None,
) -> Watched:
    """Open ``url``; ``token`` goes where the token field keeps it (sessionStorage), never
    in the URL; ``init_json`` replaces the server's /__/firebase/init.json."""
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
    page.goto(url)
    page.wait_for_selector("body[data-loaded]", timeout=20_000)
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
    anonymous.fill("#token", caller.token("user"))
    anonymous.dispatch_event("#token", "change")
    # (no wait_for_function: Playwright evaluates its predicate with eval(), which the
    # page's CSP refuses, as it should)
    anonymous.wait_for_selector("body[data-error='PERMISSION_DENIED']")
    assert "for the ops team" in anonymous.inner_text("#message")
    assert anonymous.is_hidden("#dashboard")
    assert anonymous.evaluate("sessionStorage.getItem('pack391Token')") == caller.token("user")
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


# Same origin only (issue 11) --------------------------------------------------------


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
    init = PRODUCTION_INIT if hosting == "production" else None
    base = "/ops/api" if hosting == "production" else f"/{PROJECT}/us-central1"
    watched = open_page(
        browser, f"{live_server}/ops/?region={region}", token=caller.token("ops"), init_json=init
    )
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


def test_without_a_functions_base_the_page_calls_the_hosting_rewrites(
    browser: Browser, live_server: str, caller: Caller, backends: Backends
) -> None:
    """Production's init.json has no pack391FunctionsBase: the page calls /ops/api/<name>,
    which firebase.json rewrites to the functions (and the local server does the same)."""
    seed_small_dashboard(datetime.now(UTC))
    watched = open_page(
        browser, f"{live_server}/ops/", token=caller.token("ops"), init_json=PRODUCTION_INIT
    )
    assert_shows_data(watched.page)
    assert sorted(watched.posts()) == sorted(f"{live_server}/ops/api/{n}" for n in OPS_CALLS)
    assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    watched.page.close()


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
