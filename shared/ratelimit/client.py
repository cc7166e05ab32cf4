"""Who is calling: client IP, country and user-agent fingerprint from a request.

Header names are looked up in lower case (:func:`client_info` folds them).
Forwarding headers are believed only when the socket peer is a configured
trusted proxy; a client talking to us directly cannot choose its own IP or
country by sending ``X-Forwarded-For`` or ``CF-IPCountry``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.countries import is_country_code

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ClientInfo:
    ip: str
    country: str | None
    fingerprint: str


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a bad entry is a configuration error."""
    networks = []
    for cidr in cidrs:
        text = cidr.strip()
        if text:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ValueError(f"PACK391_TRUSTED_PROXIES: {text!r} is not an IP or CIDR") from exc
    return tuple(networks)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: tuple[Network, ...]
) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def client_ip(peer: str | None, headers: Mapping[str, str], proxies: tuple[Network, ...]) -> str:
    """The client's IP: the peer, unless the peer is a trusted proxy; then CF-Connecting-IP,
    else the right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer_ip = _ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    if not _trusted(peer_ip, proxies):
        return str(peer_ip)
    cf = _ip(headers.get("cf-connecting-ip"))
    if cf is not None:
        return str(cf)
    hops = [_ip(part) for part in (headers.get("x-forwarded-for") or "").split(",")]
    for hop in reversed(hops):
        if hop is None:
            break  # garbage in the chain: trust nothing to its left
        if not _trusted(hop, proxies):
            return str(hop)
    return str(peer_ip)


def client_country(
    peer: str | None, headers: Mapping[str, str], proxies: tuple[Network, ...]
) -> str | None:
    """The country a trusted proxy says the client is in (ISO alpha-2), else None."""
    peer_ip = _ip(peer)
    if peer_ip is None or not _trusted(peer_ip, proxies):
        return None
    for header in ("cf-ipcountry", "x-appengine-country"):
        value = (headers.get(header) or "").strip().upper()
        if is_country_code(value):
            return value
    return None


def fingerprint(headers: Mapping[str, str]) -> str:
    """A short, stable id of the client software (user agent and language)."""
    raw = f"{headers.get('user-agent') or ''}|{headers.get('accept-language') or ''}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def client_info(
    peer: str | None, headers: Mapping[str, str], proxies: tuple[Network, ...]
) -> ClientInfo:
    """Everything above from the socket peer and the request headers (any case)."""
    headers = {name.lower(): value for name, value in headers.items()}
    return ClientInfo(
        ip=client_ip(peer, headers, proxies),
        country=client_country(peer, headers, proxies),
        fingerprint=fingerprint(headers),
    )
