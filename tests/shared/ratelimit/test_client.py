"""Client IP and country: believed from headers only through a trusted proxy."""

from __future__ import annotations

import pytest

from shared.ratelimit.client import client_country, client_info, client_ip, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8::/32", "173.245.48.0/20"])


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # untrusted peer: headers are ignored, whatever they say
        ("203.0.113.9", {"x-forwarded-for": "1.2.3.4"}, "203.0.113.9"),
        ("203.0.113.9", {"cf-connecting-ip": "1.2.3.4"}, "203.0.113.9"),
        # trusted peer: Cloudflare's header first
        (
            "173.245.48.5",
            {"cf-connecting-ip": "198.51.100.7", "x-forwarded-for": "9.9.9.9"},
            "198.51.100.7",
        ),
        # trusted peer: right-most untrusted X-Forwarded-For hop (left entries are client-chosen)
        ("10.1.2.3", {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.9.9.9"}, "198.51.100.7"),
        ("10.1.2.3", {"x-forwarded-for": "198.51.100.7"}, "198.51.100.7"),
        # garbage in the chain: stop there, never trust what is left of it
        ("10.1.2.3", {"x-forwarded-for": "6.6.6.6, not-an-ip, 10.9.9.9"}, "10.1.2.3"),
        # trusted peer without forwarding headers: the peer
        ("10.1.2.3", {}, "10.1.2.3"),
        ("2001:db8::1", {"x-forwarded-for": "2001:db9::5"}, "2001:db9::5"),
        ("::1", {"x-forwarded-for": "1.2.3.4"}, "::1"),
    ],
)
def test_client_ip(peer: str, headers: dict[str, str], expected: str) -> None:
    assert client_ip(peer, headers, PROXIES) == expected


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.9", {"cf-ipcountry": "PL"}, None),
        ("10.0.0.1", {"cf-ipcountry": "PL"}, "PL"),
        ("10.0.0.1", {"x-appengine-country": "br"}, "BR"),
        ("10.0.0.1", {"cf-ipcountry": "XX"}, None),
        ("10.0.0.1", {"cf-ipcountry": "T1"}, None),
        ("10.0.0.1", {}, None),
    ],
)
def test_client_country(peer: str, headers: dict[str, str], expected: str | None) -> None:
    assert client_country(peer, headers, PROXIES) == expected


def test_header_names_are_case_insensitive() -> None:
    info = client_info(
        "10.0.0.1", {"X-Forwarded-For": "198.51.100.7", "CF-IPCountry": "DE"}, PROXIES
    )
    assert (info.ip, info.country) == ("198.51.100.7", "DE")


def test_fingerprint_depends_on_user_agent() -> None:
    a = client_info("1.1.1.1", {"User-Agent": "bot/1.0"}, ())
    b = client_info("2.2.2.2", {"user-agent": "bot/1.0"}, ())
    c = client_info("1.1.1.1", {"User-Agent": "Avalo/5.2 iOS"}, ())
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_bad_proxy_config_is_named() -> None:
    with pytest.raises(ValueError, match="PACK391_TRUSTED_PROXIES: 'nope'"):
        parse_networks(["10.0.0.0/8", "nope"])
