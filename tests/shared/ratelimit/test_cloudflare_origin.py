"""cloudflare mode needs proof that a request came through *your* zone:
literal tables with Cloudflare's real published ranges, which no local socket can send
from (tests/stack/test_frontdoor_origin.py shows the same through real HTTP with a
loopback stand-in for the ranges). Cloudflare's headers, and its bot score, are believed
only when the right-most ``X-Forwarded-For`` entry is in its ranges *and* the request
carries the origin secret your Transform Rule sets; ``direct`` and a secret-less
``cloudflare`` are refused on a deployed instance."""

from __future__ import annotations

import logging

import pytest

from shared.config import CLOUDFLARE_ORIGIN_HEADER, CLOUDFLARE_RANGES, is_deployed_instance
from shared.ratelimit.client import (
    FrontDoorConfig,
    client_info,
    client_ip_and_country,
    cloudflare_bot_score,
    front_door_config,
)
from stack.platform.frontdoor import DEFAULT_ORIGIN_HEADER, Mode, forwarded_headers

SECRET = "9c1f0e6a4b7d2e8f3a5c6b1d0e9f8a7b"
HEADER = "x-pack391-origin-secret"

OURS = front_door_config(
    "cloudflare", -1, "", CLOUDFLARE_RANGES.value, origin_secret=SECRET, deployed=True
)
"""Deployed behind our zone, its Transform Rule sending SECRET."""

GFE_PEER = "169.254.1.1"  # a Cloud Run container's peer: Google's front end
CF_EDGE = "172.70.1.2"  # inside Cloudflare's published 172.64.0.0/13
CF_EDGE_V6 = "2606:4700:10::6816:1"  # inside 2606:4700::/32
NOT_CF = "198.51.100.200"
CLIENT = "203.0.113.7"


def cf(edge: str, **headers: str) -> dict[str, str]:
    """What reaches the function from ``edge`` (its X-Forwarded-For entry) with
    Cloudflare's headers for CLIENT in Brazil, plus ``headers``."""
    return {
        "x-forwarded-for": f"6.6.6.6, {edge}",
        "cf-connecting-ip": CLIENT,
        "cf-ipcountry": "BR",
        "cf-bot-score": "12",
        **headers,
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # through our zone: Cloudflare's range and our secret: believed
        (cf(CF_EDGE, **{HEADER: SECRET}), (CLIENT, "BR", 12)),
        (cf(CF_EDGE_V6, **{HEADER: SECRET}), (CLIENT, "BR", 12)),
        (cf(CF_EDGE, **{HEADER: f"  {SECRET} "}), (CLIENT, "BR", 12)),  # OWS is not the value
        # anyone else's zone or Worker: Cloudflare's ranges, no or a wrong secret
        (cf(CF_EDGE), (CF_EDGE, None, None)),
        (cf(CF_EDGE, **{HEADER: ""}), (CF_EDGE, None, None)),
        (cf(CF_EDGE, **{HEADER: SECRET[:-1]}), (CF_EDGE, None, None)),
        (cf(CF_EDGE, **{HEADER: SECRET + "0"}), (CF_EDGE, None, None)),
        (cf(CF_EDGE, **{HEADER: SECRET.upper()}), (CF_EDGE, None, None)),
        (cf(CF_EDGE, **{"x-origin-secret": SECRET}), (CF_EDGE, None, None)),  # another header
        (cf(CF_EDGE_V6, **{HEADER: "guess"}), (CF_EDGE_V6, None, None)),
        # around Cloudflare: the secret (leaked, or guessed right) is no proof on its own
        (cf(NOT_CF, **{HEADER: SECRET}), (NOT_CF, None, None)),
        (
            {"x-forwarded-for": f"{CF_EDGE}, {NOT_CF}", HEADER: SECRET, "cf-ipcountry": "BR"},
            (NOT_CF, None, None),
        ),
        # proven, but the bot score is not one Cloudflare sends: none
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": "0"}), (CLIENT, "BR", None)),
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": "100"}), (CLIENT, "BR", None)),
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": "5.5"}), (CLIENT, "BR", None)),
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": "-3"}), (CLIENT, "BR", None)),
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": "\u0663"}), (CLIENT, "BR", None)),
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": " 99 "}), (CLIENT, "BR", 99)),
        (cf(CF_EDGE, **{HEADER: SECRET, "cf-bot-score": "1"}), (CLIENT, "BR", 1)),
    ],
)
def test_cloudflare_headers_are_believed_only_with_the_range_and_the_secret(
    headers: dict[str, str], expected: tuple[str, str | None, int | None]
) -> None:
    ip, country = client_ip_and_country(GFE_PEER, headers, OURS)
    assert (ip, country, cloudflare_bot_score(GFE_PEER, headers, OURS)) == expected
    info = client_info(GFE_PEER, {k.title(): v for k, v in headers.items()}, OURS)
    assert (info.country, info.bot_score) == expected[1:]  # any header case


def test_the_bot_score_is_read_only_in_cloudflare_mode() -> None:
    headers = cf(CF_EDGE, **{HEADER: SECRET})
    for mode in ("google", "load-balancer", "direct"):
        door = front_door_config(mode, -1, "X-Client-Region", [], deployed=False)
        assert client_info(GFE_PEER, headers, door).bot_score is None, mode
    # and other constructions keep working: it is the last field, defaulting to None
    assert client_info(CLIENT, {}, door).bot_score is None


def test_a_custom_origin_header_and_trusted_hops() -> None:
    door = front_door_config(
        "cloudflare",
        1,
        "",
        CLOUDFLARE_RANGES.value,
        origin_secret=SECRET,
        origin_header=" X-Zone-Proof ",
        deployed=True,
    )
    assert door.origin_header == "x-zone-proof"
    # Cloudflare, then a load balancer of our own (one trusted hop)
    headers = cf(f"{CF_EDGE}, 34.120.0.1", **{"x-zone-proof": SECRET})
    assert client_ip_and_country(GFE_PEER, headers, door) == (CLIENT, "BR")
    assert client_ip_and_country(GFE_PEER, cf(CF_EDGE, **{HEADER: SECRET}), door) == (
        "6.6.6.6",
        None,
    )


@pytest.mark.parametrize(
    ("mode", "kwargs", "message"),
    [
        (
            "cloudflare",
            {"origin_secret": "", "deployed": True},
            "PACK391_CLOUDFLARE_ORIGIN_SECRET: not set in cloudflare mode",
        ),
        (
            "cloudflare",
            {"origin_secret": "   ", "deployed": True},
            "PACK391_CLOUDFLARE_ORIGIN_SECRET: not set in cloudflare mode",
        ),
        (
            "cloudflare",
            {"origin_secret": "short-secret", "deployed": False},
            "PACK391_CLOUDFLARE_ORIGIN_SECRET: shorter than 16 characters",
        ),
        (
            "cloudflare",
            {"origin_secret": SECRET, "origin_header": "X Proof", "deployed": True},
            "PACK391_CLOUDFLARE_ORIGIN_HEADER: 'X Proof' is not a header name",
        ),
        ("direct", {"deployed": True}, "PACK391_FRONT_DOOR: direct takes the TCP peer"),
        (" Direct ", {"deployed": True}, "PACK391_FRONT_DOOR: direct takes the TCP peer"),
    ],
)
def test_what_a_deployed_instance_refuses_names_its_setting(
    mode: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        front_door_config(mode, -1, "", CLOUDFLARE_RANGES.value, **kwargs)  # type: ignore[arg-type]


def test_off_a_deployed_instance_direct_and_a_secretless_cloudflare_are_allowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert front_door_config("direct", -1, "", [], deployed=False).origin_secret == ""
    with caplog.at_level(logging.WARNING, logger="pack391.frontdoor"):
        door = front_door_config("cloudflare", -1, "", CLOUDFLARE_RANGES.value, origin_secret="")
    assert "without PACK391_CLOUDFLARE_ORIGIN_SECRET" in caplog.text
    # the range check alone, as before the secret existed
    assert client_ip_and_country(GFE_PEER, cf(CF_EDGE), door) == (CLIENT, "BR")
    assert client_ip_and_country(GFE_PEER, cf(NOT_CF), door) == (NOT_CF, None)


def test_the_deployment_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """K_SERVICE (set by Cloud Run on every instance) without an emulator is deployed; the
    Firebase CLI's emulator sets K_SERVICE too, with FUNCTIONS_EMULATOR."""
    monkeypatch.delenv("K_SERVICE", raising=False)
    assert not is_deployed_instance()
    monkeypatch.setenv("K_SERVICE", "pack391-checkratelimit")
    assert not is_deployed_instance()  # the test session is an emulator (conftest)
    monkeypatch.delenv("FUNCTIONS_EMULATOR")
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    assert is_deployed_instance()
    with pytest.raises(ValueError, match="PACK391_FRONT_DOOR: direct"):
        front_door_config("direct", -1, "", [])
    monkeypatch.setenv("PACK391_CLOUDFLARE_ORIGIN_SECRET", f" {SECRET}\n")  # as `echo` stores it
    monkeypatch.setenv("PACK391_CLOUDFLARE_ORIGIN_HEADER", "X-Zone-Proof")
    door = front_door_config("cloudflare", -1, "", CLOUDFLARE_RANGES.value)
    assert (door.origin_secret, door.origin_header) == (SECRET, "x-zone-proof")
    monkeypatch.delenv("PACK391_CLOUDFLARE_ORIGIN_SECRET")
    with pytest.raises(ValueError, match="PACK391_CLOUDFLARE_ORIGIN_SECRET"):
        front_door_config("cloudflare", -1, "", CLOUDFLARE_RANGES.value)


def test_the_local_stand_in_sets_the_secret_as_a_transform_rule_does() -> None:
    """stack/platform/frontdoor.py's cloudflare mode with ``origin_secret`` is our zone: the
    header is set, overwriting the client's own; without it, anyone's Cloudflare passes it
    on."""
    assert CLOUDFLARE_ORIGIN_HEADER.default == DEFAULT_ORIGIN_HEADER
    assert DEFAULT_ORIGIN_HEADER.lower() == HEADER
    sent = [("X-Pack391-Origin-Secret", "client's guess"), ("x-pack391-origin-secret", "again")]
    ours = forwarded_headers(Mode.CLOUDFLARE, sent, CLIENT, {}, origin_secret=SECRET)
    assert ours == [
        ("X-Forwarded-For", CLIENT),
        ("CF-Connecting-IP", CLIENT),
        ("CF-IPCountry", "XX"),
        (DEFAULT_ORIGIN_HEADER, SECRET),
    ]
    theirs = forwarded_headers(Mode.CLOUDFLARE, sent, CLIENT, {})
    assert [v for k, v in theirs if k.lower() == HEADER] == ["client's guess", "again"]
    google = forwarded_headers(Mode.GOOGLE, sent, CLIENT, {}, origin_secret=SECRET)
    assert [v for k, v in google if k.lower() == HEADER] == ["client's guess", "again"]


def test_a_config_without_the_new_fields_still_builds() -> None:
    """FrontDoorConfig's new fields default, so the other constructions keep working."""
    plain = FrontDoorConfig(mode=OURS.mode, cloudflare=OURS.cloudflare)
    assert (plain.origin_secret, plain.origin_header) == ("", HEADER)
