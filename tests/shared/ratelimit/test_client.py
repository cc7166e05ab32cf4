"""Client IP and country behind each front door: literal tables of what each front door
really sends, and what a client can forge in front of it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import CLOUDFLARE_RANGES
from shared.ratelimit.client import (
    FrontDoor,
    FrontDoorConfig,
    client_info,
    client_ip_and_country,
    front_door_config,
)

GOOGLE = front_door_config("google", -1, "X-Client-Region", [])
LB = front_door_config("load-balancer", -1, "X-Client-Region", [])
LB_PLUS_ONE = front_door_config("load-balancer", 2, "X-Client-Region", [])
CLOUDFLARE = front_door_config("cloudflare", -1, "", CLOUDFLARE_RANGES.value)
DIRECT = front_door_config("direct", -1, "", [])

GFE_PEER = "169.254.1.1"  # what a Cloud Run container sees as its peer: never the client
CF_EDGE = "172.70.1.2"  # inside Cloudflare's published 172.64.0.0/13


@pytest.mark.parametrize(
    ("door", "peer", "headers", "expected"),
    [
        # google: the right-most entry is what Google's front end appended; the rest is the
        # client's own words, and so is any country header
        (GOOGLE, GFE_PEER, {"x-forwarded-for": "198.51.100.7"}, ("198.51.100.7", None)),
        (GOOGLE, GFE_PEER, {"x-forwarded-for": "6.6.6.6, 198.51.100.7"}, ("198.51.100.7", None)),
        (
            GOOGLE,
            GFE_PEER,
            {
                "x-forwarded-for": "6.6.6.6,198.51.100.7",
                "cf-connecting-ip": "6.6.6.6",
                "cf-ipcountry": "US",
                "x-appengine-country": "US",
                "x-client-region": "US",
            },
            ("198.51.100.7", None),
        ),
        (GOOGLE, GFE_PEER, {"x-forwarded-for": "2001:db8::5"}, ("2001:db8::5", None)),
        # no header at all: the request did not come through a front door (local use)
        (GOOGLE, "127.0.0.1", {}, ("127.0.0.1", None)),
        # garbage where the front end's entry must be: one shared "unknown", never a guess
        (GOOGLE, GFE_PEER, {"x-forwarded-for": "1.2.3.4, nonsense"}, ("unknown", None)),
        # load-balancer: "<supplied>,<client>,<forwarding rule IP>"; country from its header
        (
            LB,
            GFE_PEER,
            {"x-forwarded-for": "198.51.100.7, 34.120.0.1", "x-client-region": "PL"},
            ("198.51.100.7", "PL"),
        ),
        (
            LB,
            GFE_PEER,
            {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 34.120.0.1", "x-client-region": "US,PL"},
            ("198.51.100.7", "PL"),
        ),
        (LB, GFE_PEER, {"x-forwarded-for": "198.51.100.7, 34.120.0.1"}, ("198.51.100.7", None)),
        (
            LB,
            GFE_PEER,
            {"x-forwarded-for": "198.51.100.7, 34.120.0.1", "x-client-region": "XX"},
            ("198.51.100.7", None),
        ),
        # one proxy of your own behind the load balancer: one more trusted hop
        (
            LB_PLUS_ONE,
            GFE_PEER,
            {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 34.120.0.1, 10.0.0.3"},
            ("198.51.100.7", None),
        ),
        # cloudflare: Cloudflare's headers only when Cloudflare is who reached Google
        (
            CLOUDFLARE,
            GFE_PEER,
            {
                "x-forwarded-for": f"6.6.6.6, 198.51.100.7, {CF_EDGE}",
                "cf-connecting-ip": "198.51.100.7",
                "cf-ipcountry": "de",
            },
            ("198.51.100.7", "DE"),
        ),
        (
            CLOUDFLARE,
            GFE_PEER,
            {
                "x-forwarded-for": "6.6.6.6, 203.0.113.9",
                "cf-connecting-ip": "6.6.6.6",
                "cf-ipcountry": "DE",
            },
            ("203.0.113.9", None),
        ),
        (CLOUDFLARE, GFE_PEER, {"x-forwarded-for": f"{CF_EDGE}"}, (CF_EDGE, None)),
        # direct: the TCP peer, whatever the headers say
        (
            DIRECT,
            "203.0.113.9",
            {"x-forwarded-for": "1.2.3.4", "cf-connecting-ip": "1.2.3.4", "cf-ipcountry": "US"},
            ("203.0.113.9", None),
        ),
        (DIRECT, "::1", {"x-forwarded-for": "1.2.3.4"}, ("::1", None)),
    ],
)
def test_client_behind_each_front_door(
    door: FrontDoorConfig,
    peer: str,
    headers: dict[str, str],
    expected: tuple[str, str | None],
) -> None:
    assert client_ip_and_country(peer, headers, door) == expected


@pytest.mark.parametrize("door", [GOOGLE, LB, CLOUDFLARE, DIRECT])
def test_forged_headers_change_nothing(door: FrontDoorConfig) -> None:
    """Whatever a client writes in front of the front door's own entries, the answer is
    the same as without it."""
    appended = {
        FrontDoor.GOOGLE: "198.51.100.7",
        FrontDoor.LOAD_BALANCER: "198.51.100.7, 34.120.0.1",
        FrontDoor.CLOUDFLARE: "203.0.113.9",
        FrontDoor.DIRECT: "",
    }[door.mode]
    honest = {"x-forwarded-for": appended} if appended else {}
    baseline = client_ip_and_country(GFE_PEER, honest, door)
    forgeries = [
        {"x-forwarded-for": f"1.1.1.1, {appended}".strip(", ")},
        {"x-forwarded-for": f"{CF_EDGE}, 1.1.1.1, {appended}".strip(", ")},
        {**honest, "cf-connecting-ip": "1.1.1.1", "cf-ipcountry": "US"},
        {**honest, "x-appengine-country": "US", "x-real-ip": "1.1.1.1"},
        {**honest, "forwarded": "for=1.1.1.1"},
    ]
    for forged in forgeries:
        assert client_ip_and_country(GFE_PEER, forged, door) == baseline, forged


def test_header_names_are_case_insensitive() -> None:
    info = client_info(
        GFE_PEER, {"X-Forwarded-For": "198.51.100.7, 34.120.0.1", "X-Client-Region": "DE"}, LB
    )
    assert (info.ip, info.country) == ("198.51.100.7", "DE")


def test_fingerprint_depends_on_user_agent() -> None:
    a = client_info("1.1.1.1", {"User-Agent": "bot/1.0"}, DIRECT)
    b = client_info("2.2.2.2", {"user-agent": "bot/1.0"}, DIRECT)
    c = client_info("1.1.1.1", {"User-Agent": "Avalo/5.2 iOS"}, DIRECT)
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize(
    ("mode", "hops", "ranges", "message"),
    [
        ("googel", -1, [], "PACK391_FRONT_DOOR: 'googel' is not one of google"),
        ("google", 17, [], "PACK391_TRUSTED_HOPS: 17"),
        ("google", -2, [], "PACK391_TRUSTED_HOPS: -2"),
        ("cloudflare", -1, ["nope"], "PACK391_CLOUDFLARE_RANGES: 'nope'"),
        ("cloudflare", -1, [], "PACK391_CLOUDFLARE_RANGES: empty in cloudflare mode"),
        ("cloudflare", -1, [1], "PACK391_CLOUDFLARE_RANGES: 1 is not"),
    ],
)
def test_bad_settings_are_named(mode: str, hops: int, ranges: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        front_door_config(mode, hops, "X-Client-Region", ranges)


def test_default_hops_per_mode() -> None:
    assert (GOOGLE.trusted_hops, LB.trusted_hops, CLOUDFLARE.trusted_hops) == (0, 1, 0)
    assert front_door_config(" Load-Balancer ", 3, "x", []).trusted_hops == 3
