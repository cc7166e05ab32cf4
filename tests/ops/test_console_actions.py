"""The ops console in a real headless Chromium, signed in through a real Firebase Auth
emulator as a person signs in (email and password on the page; the staff role set by
``pack391 grant``'s code), acting on what it shows: each action is taken from the row that
shows its evidence, confirmed with a reason, and checked three ways: the state through
the callable, the audit entry (who, what, why), and the activity panel.

The platform is put in an attack's state the way the rehearsal's attack does it: a
single-source flood and a distributed spike through the real limiter, then the real DDoS
detector's run (DDoS mode, a block, alerts). The screenshot of the console during that
attack goes to .local/ops-console.png (docs/ops-console.png with
PACK391_REFRESH_SCREENSHOT=1), the README's picture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore
from playwright.sync_api import Browser, Page

from functions.ddos.wiring import protection_service
from functions.ops.wiring import ops_service
from functions.slo import policy as slo_policy
from functions.slo.wiring import slo_service
from shared import collections
from shared.firestore import get_db
from shared.ratelimit.client import ClientInfo
from shared.ratelimit.limiter import Subject
from shared.redis import get_redis
from shared.slo.recorder import SliRecorder
from stack.ops_seed import SeedSpec, seed
from tests.conftest import ROOT, AuthEmulator, Backends, Caller
from tests.ddos.test_ddos_functions import crowd, drive, minute_start
from tests.deploy_guard.test_deploy_functions import land_new_revision, start, validate
from tests.fakes.http_api import FakeHttpApi
from tests.ops.browser import (
    LOCAL_SHOTS,
    Watched,
    open_page,
    sign_in_with_password,
)
from tests.ops.helpers import ddos_mode_on, staff_user

SCREENSHOT = (
    ROOT / "docs" / "ops-console.png"
    if os.environ.get("PACK391_REFRESH_SCREENSHOT") == "1"
    else LOCAL_SHOTS / "ops-console.png"
)
"""The tracked docs/ops-console.png changes only when asked for."""
ATTACKER = "203.0.113.66"


@pytest.fixture
def hook() -> Iterator[FakeHttpApi]:
    """A local service's resize hook (the scaling area's local Cloud Run stand-in calls it)."""
    with FakeHttpApi() as api:
        api.reply("POST", "/resize", 200, {"ok": True})
        yield api


def attack() -> None:
    """Five quiet minutes, then a flood from one address and a spike from 2,000, through the
    real limiter; the detector's run over that minute (as the scheduled run does), all of
    it at least 10 s in the past, so the last hour's timeline holds it."""
    t0 = minute_start(datetime.now(UTC) - timedelta(seconds=40))
    for m in range(5, 0, -1):
        drive(t0 - timedelta(minutes=m), 50, 300, crowd(40))
    attacker = Subject(None, ClientInfo(ATTACKER, "PL", "curl"))
    drive(t0 + timedelta(seconds=5), 20, 1200, lambda i: attacker)
    drive(t0 + timedelta(seconds=5), 20, 8000, crowd(2000, "app"))
    assert protection_service().detect(t0 + timedelta(seconds=30)).mitigated


def scaled_services(caller: Caller, hook: FakeHttpApi) -> None:
    caller.call("pack391_initScaling", {})
    for service in ("api-gateway", "chat-service"):
        caller.call(
            "pack391_reportServiceMetrics",
            {"serviceId": service, "cpuPct": 35, "resizeHookUrl": f"{hook.url}/resize"},
            role="ops",
        )


def burning_budget() -> None:
    """An hour in which one call in five failed (20x a 99 % objective: a page), recorded
    as the edges record calls, then the SLO evaluator's run as the scheduled run does it:
    the deploy freeze is in force."""
    now = datetime.now(UTC)
    minute = slo_policy.evaluated_minute(now)
    recorder = SliRecorder(get_redis, dict, flush_every_sec=3600)
    for back in range(60):
        at = slo_policy.minute_start(minute - back) + timedelta(seconds=5)
        for i in range(20):
            recorder.record(at, ("class:ai",), i < 4, 20.0)
    recorder.flush()
    slo_service().evaluate(now)


def audit_entries(reason: str) -> list[dict[str, Any]]:
    query = (
        get_db()
        .collection(collections.AUDIT_LOG)
        .where(filter=firestore.FieldFilter("reason", "==", reason))
    )
    return [{"id": s.id, **(s.to_dict() or {})} for s in query.stream()]


def act(page: Page, selector: str, reason: str, value: str | None = None) -> str:
    """Take the action of the button at ``selector``: the confirmation states the effect,
    takes the reason (and a value), and the call goes out; returns the dialog's result
    (``ok`` or the refusal's status) once known."""
    page.click(selector)
    page.wait_for_selector("#confirm[open]")
    assert page.inner_text("#confirmEffect").strip()
    if value is not None:
        page.fill("#confirmInput", value)
    page.fill("#confirmReason", reason)
    done = page.get_attribute("body", "data-actions") or "0"
    page.click("#confirmOk")
    page.wait_for_selector("#confirm[data-result]", state="attached")
    result = page.get_attribute("#confirm", "data-result") or ""
    if result == "ok":  # the page's refresh after this action (not an earlier one) is done
        page.wait_for_selector(f"body[data-actions='{int(done) + 1}']", timeout=20_000)
    return result


def assert_audited(page: Page, reason: str, email: str, action_prefix: str) -> dict[str, Any]:
    """The audit log has the action with its reason and who did it, and the activity panel
    shows it."""
    # (a rollback's completion is audited too, by the system, with the same reason)
    entries = [e for e in audit_entries(reason) if e["actorUid"].startswith("system") is False]
    assert len(entries) == 1, entries
    (entry,) = entries
    assert entry["actorEmail"] == email
    assert entry["action"].startswith(action_prefix), entry["action"]
    row = page.query_selector(f"tr[data-activity='{entry['id']}']")
    assert row is not None, page.inner_text("#activity")
    assert email in row.inner_text() and reason in row.inner_text()
    assert row.get_attribute("data-action-name") == entry["action"]
    return entry


def signed_in(
    browser: Browser, live_server: str, emulator: AuthEmulator, backends: Backends, role: str
) -> Watched:
    email = f"{role}@example.com"
    password = staff_user(emulator, backends, email, role)
    watched = open_page(browser, f"{live_server}/ops/")
    sign_in_with_password(watched, email, password)
    assert watched.page.get_attribute("body", "data-error") is None, watched.page.inner_text(
        "#message"
    )
    return watched


def test_an_admin_acts_on_an_attack_from_the_page(
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    proxied_auth_emulator: AuthEmulator,
    hook: FakeHttpApi,
) -> None:
    now = datetime.now(UTC)
    seed(get_db(), SeedSpec(), now)
    service = ops_service()
    for minutes in range(-8, 0):  # the last minutes' metrics, for the charts
        service.update(now + timedelta(minutes=minutes), f"run{minutes}")
    land_new_revision(caller)  # a canary at 5 % when the attack comes
    validate(caller)
    start(caller)
    attack()
    scaled_services(caller, hook)
    caller.call(
        "pack391_updateMarketControl",
        {"country": "PL", "config": {"launchStatus": "soft_launch", "trafficLimit": 500}},
    )
    burning_budget()
    service.update(datetime.now(UTC), "run0")
    watched = signed_in(browser, live_server, proxied_auth_emulator, backends, "admin")
    page = watched.page
    email = "admin@example.com"
    assert page.get_attribute("[data-ddos-mode]", "data-ddos-mode") == "on"
    assert (
        page.get_attribute("[data-slo-scope='platform'] [data-slo-level]", "data-slo-level")
        == "page"
    )
    assert page.query_selector(f"[data-block='ip:{ATTACKER}']") is not None
    assert len(page.query_selector_all("tr[data-alert]")) >= 2
    assert page.query_selector_all("#timeline [data-lane='mitigation']") != []
    assert page.query_selector_all("#timeline [data-lane='alert']") != []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # acknowledge an alert
    alert_id = page.get_attribute("tr[data-alert] button[data-act='alert-ack']", "data-id")
    assert act(page, f"button[data-act='alert-ack'][data-id='{alert_id}']", "looking at it") == "ok"
    live = caller.call("pack391_getOpsLive", {}, role="ops").result
    assert {a["id"]: a["status"] for a in live["alerts"]}[alert_id] == "acknowledged"
    assert (
        page.get_attribute(f"tr[data-alert='{alert_id}'] [data-alert-status]", "data-alert-status")
        == "acknowledged"
    )
    assert_audited(page, "looking at it", email, "ops.alert")

    # lift the attacker's block
    assert act(page, f"[data-block='ip:{ATTACKER}'] button", "false positive check") == "ok"
    stats = caller.call("pack391_getDDoSStats", {}, role="ops").result
    assert ATTACKER not in [b["subject"] for b in stats["blocks"]]
    assert page.query_selector(f"[data-block='ip:{ATTACKER}']") is None
    assert_audited(page, "false positive check", email, "ddos")

    # add the address to the allowlist, then remove it
    assert act(page, "button[data-act='allow-add']", "partner NAT", "198.51.100.0/24") == "ok"
    stats = caller.call("pack391_getDDoSStats", {}, role="ops").result
    assert "198.51.100.0/24" in [a["entry"] for a in stats["allowlist"]]
    assert page.query_selector("[data-allow='198.51.100.0/24']") is not None
    assert_audited(page, "partner NAT", email, "ddos")
    assert act(page, "[data-allow='198.51.100.0/24'] button", "partner gone") == "ok"
    stats = caller.call("pack391_getDDoSStats", {}, role="ops").result
    assert stats["allowlist"] == []
    assert_audited(page, "partner gone", email, "ddos")

    # end DDoS mode
    assert act(page, "button[data-act='ddos-end']", "attack over") == "ok"
    assert caller.call("pack391_getDDoSStats", {}, role="ops").result["mode"]["active"] is False
    assert page.get_attribute("[data-ddos-mode]", "data-ddos-mode") == "off"
    assert_audited(page, "attack over", email, "ddos")

    # scale a service
    assert act(page, "tr[data-service='api-gateway'] button", "launch hour", "7") == "ok"
    services = caller.call("pack391_getOpsLive", {}, role="ops").result["services"]
    assert {s["name"]: s["instances"] for s in services}["api-gateway"] == 7
    assert (
        page.get_attribute("tr[data-service='api-gateway'] [data-instances]", "data-instances")
        == "7"
    )
    assert_audited(page, "launch hour", email, "scaling")

    # pause and resume a market
    assert act(page, "tr[data-market='PL'] button", "payment incident") == "ok"
    market = caller.call("pack391_getMarketControls", {"country": "PL"}, role="ops").result
    assert market["markets"][0]["emergencyPaused"] is True
    assert page.get_attribute("tr[data-market='PL'] [data-paused]", "data-paused") == "1"
    assert_audited(page, "payment incident", email, "market")
    assert act(page, "tr[data-market='PL'] button", "incident closed") == "ok"
    market = caller.call("pack391_getMarketControls", {"country": "PL"}, role="ops").result
    assert market["markets"][0]["emergencyPaused"] is False
    assert_audited(page, "incident closed", email, "market")

    # lift the deploy freeze the burning budget put in force
    freeze = "[data-slo-action='deploy_freeze']"
    assert page.get_attribute(freeze, "data-enforced") == "1"
    assert act(page, f"{freeze} button", "hotfix for the burn", "20") == "ok"
    state = caller.call("pack391_getSloStatus", {}, role="ops").result["state"]
    assert state["actions"]["deploy_freeze"]["enforced"] is False
    assert state["lifts"]["deploy_freeze"]["by"] == email
    assert page.get_attribute(freeze, "data-enforced") == "0"
    assert "lifted until" in page.inner_text(freeze)
    assert_audited(page, "hotfix for the burn", email, "slo.deploy_freeze.lifted")

    # every action is on the timeline's staff lane
    page.click("#refresh")
    assert len(page.query_selector_all("#timeline [data-lane='action']")) >= 8
    assert watched.off_origin(live_server) == []
    assert watched.csp_violations() == []
    page.close()


def test_an_admin_steers_a_deployment_from_the_page(
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    proxied_auth_emulator: AuthEmulator,
) -> None:
    land_new_revision(caller)
    validate(caller)
    deployment = start(caller)["deploymentId"]
    watched = signed_in(browser, live_server, proxied_auth_emulator, backends, "admin")
    page = watched.page
    email = "admin@example.com"
    row = f"[data-deployment='{deployment}']"
    assert page.get_attribute(row, "data-phase") in {"progressing", "validating", "pending"}

    def phase() -> str:
        status = caller.call(
            "pack391_getDeploymentStatus", {"deploymentId": deployment}, role="ops"
        )
        return str(status.result["phase"])

    assert act(page, f"{row} button[data-act='deploy-pause']", "hold for the launch") == "ok"
    assert phase() == "paused" and page.get_attribute(row, "data-phase") == "paused"
    assert_audited(page, "hold for the launch", email, "deploy")
    assert act(page, f"{row} button[data-act='deploy-resume']", "go on") == "ok"
    assert phase() != "paused"
    assert_audited(page, "go on", email, "deploy")
    assert act(page, f"{row} button[data-act='deploy-promote']", "looks good") == "ok"
    assert phase() in {"promoting", "succeeded"}
    assert_audited(page, "looks good", email, "deploy")

    # the next release: rolled back from the page
    land_new_revision(caller)
    validate(caller, "v3")
    second = start(caller, version="v3")["deploymentId"]
    page.click("#refresh")
    page.wait_for_selector(f"[data-deployment='{second}'] button[data-act='deploy-pause']")
    # acting on evidence someone else has just changed: the precondition's refusal, verbatim
    page.click(f"[data-deployment='{second}'] button[data-act='deploy-pause']")
    page.wait_for_selector("#confirm[open]")
    control = {"deploymentId": second, "action": "pause", "reason": "from the CLI"}
    caller.call("pack391_controlDeployment", control, uid="ada")
    page.fill("#confirmReason", "me too")
    page.click("#confirmOk")
    page.wait_for_selector("#confirm[data-result]", state="attached")
    error = page.inner_text("#confirmError")
    assert page.get_attribute("#confirm", "data-result") == "FAILED_PRECONDITION", error
    assert error.startswith("pack391_controlDeployment refused (failed-precondition): ")
    assert audit_entries("me too") == []
    page.click("#confirmCancel")
    page.click("#refresh")
    page.wait_for_selector(f"[data-deployment='{second}'][data-phase='paused']")
    assert (
        act(page, f"[data-deployment='{second}'] button[data-act='deploy-rollback']", "bad build")
        == "ok"
    )
    status = caller.call("pack391_getDeploymentStatus", {"deploymentId": second}, role="ops").result
    assert status["phase"] in {"rolling_back", "rolled_back"}
    assert_audited(page, "bad build", email, "deploy")
    assert page.query_selector_all("#timeline [data-lane='deployment']") != []
    page.close()


def test_refusals_are_shown_verbatim_and_nothing_changes(
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    proxied_auth_emulator: AuthEmulator,
) -> None:
    """An ops user (not admin) may look and acknowledge, not lift DDoS mode: the function's
    refusal is shown as it came, in the dialog, which stays open; a bad value is the
    function's INVALID_ARGUMENT naming the field; a missing reason never leaves the page."""
    now = datetime.now(UTC)
    seed(get_db(), SeedSpec(), now)
    ops_service().update(now, "run0")  # the alert rules raise the seeded queues' alerts
    ddos_mode_on(backends.redis_url, now + timedelta(minutes=10), "traffic_spike")
    watched = signed_in(browser, live_server, proxied_auth_emulator, backends, "ops")
    page = watched.page
    alert_id = page.get_attribute("tr[data-alert] button[data-act='alert-ack']", "data-id")
    assert act(page, f"button[data-act='alert-ack'][data-id='{alert_id}']", "mine") == "ok"
    live = caller.call("pack391_getOpsLive", {}, role="ops").result
    assert {a["id"]: a["status"] for a in live["alerts"]}[alert_id] == "acknowledged"
    assert_audited(page, "mine", "ops@example.com", "ops.alert")
    calls_before = len(watched.posts(polls=False))
    assert act(page, "button[data-act='ddos-end']", "") == "REASON"
    assert "reason is required" in page.inner_text("#confirmError")
    assert len(watched.posts(polls=False)) == calls_before  # nothing was called
    page.fill("#confirmReason", "trying")
    page.evaluate("document.getElementById('confirm').removeAttribute('data-result')")
    page.click("#confirmOk")
    page.wait_for_selector("#confirm[data-result]", state="attached")
    error = page.inner_text("#confirmError")
    assert page.get_attribute("#confirm", "data-result") == "PERMISSION_DENIED", error
    assert error.startswith("pack391_liftBlock refused (permission-denied): ")
    assert page.is_visible("#confirm")
    assert caller.call("pack391_getDDoSStats", {}, role="ops").result["mode"]["active"] is True
    assert audit_entries("trying") == []
    page.click("#confirmCancel")

    # validation: the function names the field
    admin = signed_in(browser, live_server, proxied_auth_emulator, backends, "admin").page
    assert (
        act(admin, "button[data-act='allow-add']", "typo", "not-an-address") == "INVALID_ARGUMENT"
    )
    error = admin.inner_text("#confirmError")
    assert error.startswith("pack391_setAllowlist refused (invalid-argument): ")
    assert "entry" in error
    assert audit_entries("typo") == []
    admin.close()
    page.close()


def test_the_page_follows_changes_without_a_reload(
    browser: Browser,
    live_server: str,
    caller: Caller,
    backends: Backends,
    proxied_auth_emulator: AuthEmulator,
) -> None:
    """Someone else acts (another admin's call): within seconds the page shows it, with no
    reload, through the live read's etag."""
    watched = signed_in(browser, live_server, proxied_auth_emulator, backends, "ops")
    page = watched.page
    assert page.get_attribute("[data-ddos-mode]", "data-ddos-mode") == "off"
    etag = page.get_attribute("body", "data-live")
    ddos_mode_on(backends.redis_url, datetime.now(UTC) + timedelta(minutes=10), "traffic_spike")
    entry = {"action": "add", "entry": "198.51.100.7", "reason": "partner"}
    caller.call("pack391_setAllowlist", entry, uid="grace")
    page.wait_for_selector("[data-ddos-mode='on']", timeout=15_000)
    page.wait_for_selector("[data-allow='198.51.100.7/32']", timeout=15_000)
    assert page.get_attribute("body", "data-live") != etag
    caller.call("pack391_liftBlock", {"scope": "ddos_mode", "reason": "from elsewhere"}, uid="ada")
    page.wait_for_selector("[data-ddos-mode='off']", timeout=15_000)
    page.wait_for_selector("tr[data-activity]:has-text('from elsewhere')", timeout=15_000)
    assert int(page.get_attribute("#liveAge", "data-age-sec") or "99") <= 10
    # polled every 5 s, answered notModified when nothing changed
    lives = [r for r in watched.requests if r.url.endswith("/pack391_getOpsLive")]
    assert len(lives) >= 3
    assert page.evaluate("location.href").endswith("/ops/")  # never reloaded
    page.close()
