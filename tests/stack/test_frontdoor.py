"""The rate limiter behind each front door, as deployed: real HTTP through
:mod:`stack.platform.frontdoor` (which forwards the way Google's front end, a load balancer and
Cloudflare do) to the real local functions server, clients connecting from distinct
loopback addresses. Forged forwarding headers must change nothing in any mode."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.ratelimit.middleware import default_limiter
from stack.platform.frontdoor import FrontDoorProxy, Mode, forwarded_headers
from tests.conftest import Caller

A = "127.0.0.2"
B = "127.0.0.3"
CLOUDFLARE_EGRESS = "127.0.0.9"

CHECK = "pack391_checkRateLimit"
GEO = "pack391_setGeoThrottle"
STATS = "pack391_getDDoSStats"

Headers = Sequence[tuple[str, str]]


def request(
    base: str,
    method: str,
    path: str,
    *,
    source: str,
    headers: Headers = (),
    body: bytes | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP request to ``base`` from the local address ``source``; header lines are
    sent as given (duplicates included)."""
    url = urlsplit(base)
    assert url.hostname is not None
    connection = http.client.HTTPConnection(
        url.hostname, url.port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.putrequest(method, path)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def call(
    caller: Caller,
    base: str,
    name: str,
    data: Any,
    *,
    uid: str,
    source: str,
    headers: Headers = (),
    role: str = "user",
) -> tuple[int, dict[str, Any]]:
    """A callable over real HTTP: POST {"data": ...} with the caller's ID token."""
    status, answer_headers, body = request(
        base,
        "POST",
        caller.url(name),
        source=source,
        headers=[
            ("Content-Type", "application/json"),
            ("Authorization", f"Bearer {caller.token(role, uid)}"),
            *headers,
        ],
        body=json.dumps({"data": data}).encode(),
    )
    content_type = dict((k.lower(), v) for k, v in answer_headers).get("content-type", "")
    assert content_type.startswith("application/json"), (status, content_type, body[:200])
    parsed: dict[str, Any] = json.loads(body)
    return status, parsed


def check(
    caller: Caller,
    base: str,
    endpoint_class: str,
    *,
    uid: str,
    source: str,
    headers: Headers = (),
) -> dict[str, Any]:
    status, body = call(
        caller,
        base,
        CHECK,
        {"endpointClass": endpoint_class},
        uid=uid,
        source=source,
        headers=headers,
    )
    assert status == 200, body
    result: dict[str, Any] = body["result"]
    return result


def set_br_throttle(caller: Caller) -> None:
    """Auth's 5/min becomes 2/min for BR (5 x 0.4)."""
    caller.call(GEO, {"country": "BR", "multiplier": 0.4, "reason": "test"}).result  # noqa: B018


# ------------------------------------------------------------ the proxy itself


@pytest.fixture
def echo() -> Iterator[str]:
    """An upstream that answers with what it received, as JSON (status 207, a custom header)."""

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _echo(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "peer": self.client_address[0],
                    "headers": list(self.headers.items()),
                    "body": self.rfile.read(length).decode(),
                }
            ).encode()
            self.send_response(207)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Upstream", "echo")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_OPTIONS = _echo

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/base"
    server.shutdown()
    server.server_close()


def echoed(base: str, method: str = "POST", headers: Headers = (), body: bytes = b"") -> Any:
    status, answer_headers, raw = request(
        base, method, "/fn?x=1", source=A, headers=headers, body=body
    )
    assert status == 207
    assert ("X-Upstream", "echo") in answer_headers
    seen = json.loads(raw)
    seen["header"] = {}
    for name, value in seen["headers"]:
        assert name.lower() not in seen["header"], f"{name} sent twice"
        seen["header"][name.lower()] = value
    return seen


def test_google_appends_the_peer_and_passes_everything_else(echo: str) -> None:
    with FrontDoorProxy("google", echo) as google:
        seen = echoed(
            google.url,
            headers=[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-For", "7.7.7.7, 8.8.8.8"),
                ("CF-Connecting-IP", "9.9.9.9"),
                ("X-Client-Region", "BR"),
                ("Content-Type", "application/json"),
            ],
            body=b'{"data": 1}',
        )
        assert (seen["method"], seen["path"], seen["body"]) == (
            "POST",
            "/base/fn?x=1",
            '{"data": 1}',
        )
        assert seen["header"]["x-forwarded-for"] == f"6.6.6.6, 7.7.7.7, 8.8.8.8, {A}"
        assert seen["header"]["cf-connecting-ip"] == "9.9.9.9"
        assert seen["header"]["x-client-region"] == "BR"
        for method in ("GET", "OPTIONS"):
            bare = echoed(google.url, method)
            assert (bare["method"], bare["header"]["x-forwarded-for"]) == (method, A)


def test_load_balancer_appends_peer_rule_and_country(echo: str) -> None:
    with FrontDoorProxy("load-balancer", echo, countries={A: "BR"}) as lb:
        seen = echoed(lb.url, headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Client-Region", "PL")])
        assert seen["header"]["x-forwarded-for"] == f"6.6.6.6, {A}, 34.120.0.1"
        assert seen["header"]["x-client-region"] == "PL, BR"
        assert echoed(lb.url)["header"]["x-client-region"] == "BR"


def test_cloudflare_overwrites_its_headers_and_connects_from_its_egress(echo: str) -> None:
    proxy = FrontDoorProxy("cloudflare", echo, countries={A: "BR"}, source_address="127.0.0.9")
    with proxy as cloudflare:
        seen = echoed(
            cloudflare.url,
            headers=[("CF-Connecting-IP", "1.1.1.1"), ("cf-ipcountry", "PL")],
        )
        assert seen["peer"] == CLOUDFLARE_EGRESS
        assert seen["header"]["cf-connecting-ip"] == A
        assert seen["header"]["cf-ipcountry"] == "BR"
        assert seen["header"]["x-forwarded-for"] == A
    # hop-by-hop headers, and those Connection names, are not forwarded
    sent = forwarded_headers(
        Mode.CLOUDFLARE,
        [("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"), ("TE", "trailers")],
        B,
        {},
    )
    assert sent == [("X-Forwarded-For", B), ("CF-Connecting-IP", B), ("CF-IPCountry", "XX")]


def test_an_unreachable_upstream_is_a_bad_gateway(echo: str) -> None:
    from stack.platform.procs import free_port

    with FrontDoorProxy("google", f"http://127.0.0.1:{free_port()}", timeout=5) as google:
        status, _, body = request(google.url, "GET", "/", source=A)
    assert status == 502 and body.startswith(b"upstream failed")


# ------------------------------------------------------------ the limiter behind it


def forgeries(victim: str) -> list[list[tuple[str, str]]]:
    """What a client sends to pass as ``victim`` (or as anyone but itself)."""
    return [
        [("X-Forwarded-For", victim)],
        [("X-Forwarded-For", f"6.6.6.6, {victim}")],
        [
            ("CF-Connecting-IP", victim),
            ("CF-IPCountry", "PL"),
            ("X-Forwarded-For", f"{victim}, {victim}"),
        ],
        [
            ("X-Forwarded-For", victim),
            ("X-Forwarded-For", victim),
            ("X-Real-IP", victim),
            ("Forwarded", f"for={victim}"),
        ],
    ]


ADDRESS_PAYMENTS = 20 * 3
"""An address's payment quota with no established user behind it: 20 users' limits
(``ADDRESS_QUOTA_BASE_USERS`` x 3)."""


def spend_payment_address(
    caller: Caller, base: str, *, source: str, headers: Callable[[int], Headers]
) -> list[dict[str, Any]]:
    """Payment checks from ``source`` by users 3 each until one is refused: the 61st, by
    ``source``'s own address quota, if every request counted as ``source``. The quota
    refills one request a second (60 a minute, real time on the server), so a run slowed
    by a loaded box earns one more per second it took, and never more: 61 checks once
    took 1.1 s here and the 61st passed."""
    answers: list[dict[str, Any]] = []
    began = time.monotonic()
    for k in range(2 * ADDRESS_PAYMENTS):
        answers.append(
            check(caller, base, "payment", uid=f"{source}-{k // 3}", source=source,
                  headers=headers(k))
        )  # fmt: skip
        if not answers[-1]["allowed"]:
            break
    took = time.monotonic() - began
    allowed = [a["allowed"] for a in answers]
    assert allowed[-1] is False and all(allowed[:-1]), allowed
    assert ADDRESS_PAYMENTS <= len(answers) - 1 <= ADDRESS_PAYMENTS + int(took) + 1, took
    assert answers[-1]["reason"] == "ip_limit", answers[-1]
    return answers


def exhaust_payment_ip_bucket(caller: Caller, base: str, *, source: str, victim: str) -> None:
    """Payment checks from ``source`` as many users, each forging ``victim``'s (and other)
    addresses: the address quota that runs out is ``source``'s own."""
    forged = forgeries(victim)
    spend_payment_address(caller, base, source=source, headers=lambda k: forged[k % len(forged)])


def fresh(answer: dict[str, Any]) -> bool:
    """The first request of a bucket nobody else touched: allowed, one spent."""
    return bool(answer["allowed"]) and answer["remaining"] == answer["limit"] - 1


def test_google_front_end_forged_forwarding_changes_nothing(
    caller: Caller, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_FRONT_DOOR", "google")
    with FrontDoorProxy("google", live_server) as google:
        exhaust_payment_ip_bucket(caller, google.url, source=A, victim=B)
        b = check(caller, google.url, "payment", uid="b", source=B)
    assert (b["allowed"], b["remaining"]) == (True, 2)


def test_direct_the_peer_is_the_client(
    caller: Caller, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_FRONT_DOOR", "direct")
    exhaust_payment_ip_bucket(caller, live_server, source=A, victim=B)
    b = check(caller, live_server, "payment", uid="b", source=B)
    assert (b["allowed"], b["remaining"]) == (True, 2)


def test_load_balancer_country_is_the_balancers(
    caller: Caller, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_br_throttle(caller)
    monkeypatch.setenv("PACK391_FRONT_DOOR", "load-balancer")
    with FrontDoorProxy("load-balancer", live_server, countries={A: "BR", B: "PL"}) as lb:
        brazil = check(
            caller,
            lb.url,
            "auth",
            uid="br",
            source=A,
            headers=[("X-Client-Region", "PL"), ("X-Forwarded-For", f"{B}, 34.120.0.1")],
        )
        poland = check(
            caller, lb.url, "auth", uid="pl", source=B, headers=[("X-Client-Region", "BR")]
        )
        assert (brazil["limit"], poland["limit"]) == (2, 5)
        # and the address is the one the balancer saw, not the forged one
        exhaust_payment_ip_bucket(caller, lb.url, source=B, victim=A)
        a = check(caller, lb.url, "payment", uid="a", source=A)
    assert fresh(a) and a["limit"] == 1  # BR: 3 x 0.4


def test_cloudflare_is_believed_only_from_its_ranges(
    caller: Caller, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_br_throttle(caller)
    monkeypatch.setenv("PACK391_FRONT_DOOR", "cloudflare")
    monkeypatch.setenv("PACK391_CLOUDFLARE_RANGES", f"{CLOUDFLARE_EGRESS}/32")
    with (
        FrontDoorProxy("google", live_server) as google,
        FrontDoorProxy(
            "cloudflare", google.url, countries={A: "BR"}, source_address=CLOUDFLARE_EGRESS
        ) as cloudflare,
    ):
        through = check(
            caller,
            cloudflare.url,
            "auth",
            uid="via-cf",
            source=A,
            headers=[("CF-IPCountry", "PL"), ("CF-Connecting-IP", B)],
        )
        assert through["limit"] == 2  # Cloudflare's country for A is believed
        forged = [("CF-Connecting-IP", A), ("CF-IPCountry", "BR")]
        around = check(caller, google.url, "auth", uid="around", source=B, headers=forged)
        assert around["limit"] == 5  # around Cloudflare: no country at all

        # B, going around Cloudflare and claiming to be A, fills only its own bucket
        answers = spend_payment_address(caller, google.url, source=B, headers=lambda k: forged)
        a = check(caller, cloudflare.url, "payment", uid="a", source=A)
        assert fresh(a) and a["limit"] == 1  # BR: 3 x 0.4

    default_limiter().flush_counters()
    stats = caller.call(STATS, {}, role="ops").result
    offenders = {o["ip"]: o["requests"] for o in stats["topOffenders"]}
    assert (offenders.get(B), offenders.get(A)) == (1 + len(answers), 2)
    assert CLOUDFLARE_EGRESS not in offenders


def test_a_misconfigured_front_door_answers_in_json(
    caller: Caller, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_FRONT_DOOR", "googel")
    with FrontDoorProxy("google", live_server) as google:
        status, body = call(caller, google.url, CHECK, {"endpointClass": "auth"}, uid="u", source=A)
    assert (status, body["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert "PACK391_FRONT_DOOR: 'googel'" in body["error"]["message"]
