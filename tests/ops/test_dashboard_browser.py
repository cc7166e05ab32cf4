"""The ops page in a real headless Chromium (Debian's package, driven by Playwright)
against the local functions server over HTTP, with seeded data: the numbers shown are
the function's, and a screenshot goes to docs/ops-dashboard.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from functions.ops import ops_service
from functions.ops.policy import flatten
from shared import collections
from shared.firestore import get_db
from shared.models.ops import LiveMetrics
from shared.models.scaling import IsolationState
from stack.ops_seed import SeedSpec, seed
from tests.conftest import ROOT, Backends, Caller
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


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("body[data-loaded]", timeout=20_000)
    return page


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

    token = caller.token("ops")
    page = open_page(browser, f"{live_server}/ops/?token={token}")
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
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


def test_non_ops_users_get_a_clear_message(
    browser: Browser, live_server: str, caller: Caller
) -> None:
    page = open_page(browser, f"{live_server}/ops/?token={caller.token('user')}")
    assert page.get_attribute("body", "data-error") == "PERMISSION_DENIED"
    assert "for the ops team" in page.inner_text("#message")
    assert page.is_hidden("#dashboard")
    page.close()
    anonymous = open_page(browser, f"{live_server}/ops/")
    assert anonymous.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    assert "Sign in" in anonymous.inner_text("#message")
    anonymous.close()
