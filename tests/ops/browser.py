"""What the ops page's browser tests share: headless Chromium (Debian's package, driven by
Playwright), a page whose every request and console message is recorded, Google's side of
Firebase Auth for the page as Hosting serves it, and signing in through the Firebase Auth
emulator for the page as the local stack serves it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route

from stack.platform.auth_emulator import PROXIED_PREFIXES
from tests.conftest import PROJECT, ROOT

CHROMIUM = os.environ.get("PACK391_CHROMIUM") or shutil.which("chromium")
"""Debian's chromium, or the browser ``PACK391_CHROMIUM`` names (GitHub's runners have
Google Chrome, not Debian's chromium)."""
LOCAL_SHOTS = ROOT / ".local"
"""Screenshots that are not tracked."""
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
PRODUCTION_INIT = {
    "projectId": PROJECT,
    "apiKey": "fake",
    "authDomain": f"{PROJECT}.firebaseapp.com",
}
"""What Hosting's /__/firebase/init.json looks like (no pack391 keys)."""
READS = ("pack391_getOpsDashboard", "pack391_getHistoricalMetrics")
"""What the page calls for the minute's refresh; then the live part and the timeline."""
LIVE = ("pack391_getOpsLive", "pack391_getOpsTimeline")
POLLED = "pack391_getOpsLive"
"""The call the page repeats on its own every 5 s: how often a test sees it depends on how
long the test took, so counts of calls leave it out (:meth:`Watched.posts`)."""


@dataclass
class Watched:
    """A page with every request it made and every console message it printed."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def off_origin(self, origin: str) -> list[str]:
        return [r.url for r in self.requests if not same_origin(r.url, origin)]

    def posts(self, polls: bool = True) -> list[str]:
        """The calls to the functions (Google's Identity Toolkit and the local Auth
        emulator's paths are not among them); without the live poll's (:data:`POLLED`)
        unless ``polls``."""
        return [
            r.url
            for r in self.requests
            if r.method == "POST"
            and not is_google(r.url)
            and not is_auth_path(r.url)
            and (polls or not r.url.endswith(f"/{POLLED}"))
        ]

    def called(self) -> list[str]:
        """The names of the functions called, in order."""
        return [url.rsplit("/", 1)[1] for url in self.posts()]

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

AUTH_PATHS = tuple(PROXIED_PREFIXES)
"""Where SDK 8's ``auth.useEmulator(location.origin)`` sends Firebase Auth's calls: the
local server hands them to the Auth emulator."""


def is_google(url: str) -> bool:
    return urlsplit(url).hostname in GOOGLE_AUTH_HOSTS


def is_auth_path(url: str) -> bool:
    return urlsplit(url).path.startswith(AUTH_PATHS)


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
    init_json: Mapping[str, object] | None = None,
    google: FakeGoogleAuth | None = None,
) -> Watched:
    """Open ``url``; ``init_json`` replaces the server's /__/firebase/init.json; ``google``
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


def next_load(page: Page, before: str | None, timeout_ms: int = 20_000) -> None:
    """Wait until the page has finished a refresh that began after ``before`` (its
    ``body[data-loaded]`` stamp). (No wait_for_function: Playwright evaluates its predicate
    with eval(), which the page's CSP refuses, as it should.)"""
    if before is None:
        page.wait_for_selector("body[data-loaded]", timeout=timeout_ms)
    else:
        page.wait_for_selector(f"body:not([data-loaded='{before}'])", timeout=timeout_ms)


def sign_in_with_password(watched: Watched, email: str, password: str) -> None:
    """Sign in on the page as a person does (the email and password fields), through
    Firebase Auth (the Auth emulator locally), and wait for the page to load as that user."""
    page = watched.page
    before = page.get_attribute("body", "data-loaded")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#signinPassword")
    next_load(page, before)


def sign_in_with_custom_token(watched: Watched) -> None:
    """Sign in with Firebase Auth (SDK 8's own ``signInWithCustomToken``, Google's side
    faked) and wait for the page to load the dashboard as that user."""
    page = watched.page
    before = page.get_attribute("body", "data-loaded")
    signed_in = page.evaluate(
        "firebase.auth().signInWithCustomToken('test-custom-token').then(() => true)"
    )
    assert signed_in is True
    next_load(page, before)


def open_on_hosting(
    browser: Browser, url: str, id_token: str | None, uid: str = "ops-1"
) -> tuple[Watched, FakeGoogleAuth]:
    """The page as Hosting serves it (Hosting's init.json), signed in with ``id_token``
    through Firebase Auth (None: signed out)."""
    google = FakeGoogleAuth(id_token or "", uid)
    watched = open_page(browser, url, init_json=PRODUCTION_INIT, google=google)
    assert watched.page.get_attribute("body", "data-error") == "UNAUTHENTICATED"
    if id_token is not None:
        sign_in_with_custom_token(watched)
    return watched, google


def assert_sdk_served_locally(watched: Watched) -> None:
    """The page's SDK came from this origin at Hosting's URLs, served by the local stack."""
    assert watched.sdk_loads() == dict.fromkeys(SDK_FILES, 200)
    assert watched.page.evaluate("firebase.SDK_VERSION") == "8.10.1"
