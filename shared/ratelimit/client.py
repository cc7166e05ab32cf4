"""Who is calling: client IP, country and user-agent fingerprint, as the front door says.

Deployed, the TCP peer of a function is never the client: it is Google's front
end (or, behind a load balancer, the load balancer's proxy). The client's
address is in ``X-Forwarded-For``, and a client can write anything to the *left*
of what the front end appends. So, as Envoy does with ``xff_num_trusted_hops``,
entries are counted from the right, and the left-most entry is never believed.
One setting, ``PACK391_FRONT_DOOR``, says what is in front of the functions:

``google`` (the default: a plain ``firebase deploy``)
    The client connects to Google's front end, which appends (some reports say:
    writes) the address it saw as the right-most ``X-Forwarded-For`` entry. That
    entry is the client. Google's front end gives no country header here.
``load-balancer``
    An external Application Load Balancer appends ``<client-ip>,<forwarding rule
    IP>`` ("Only the <immediate client IP> and <global forwarding rule external
    IP> entries are provided by the load balancer. All other entries in the list
    are passed along without verification": Google Cloud, "External Application
    Load Balancer overview", X-Forwarded-For header). So one trusted hop is
    skipped, plus any proxies of your own (``PACK391_TRUSTED_HOPS``). The country
    comes from a custom request header the load balancer sets to
    ``{client_region}`` (``PACK391_COUNTRY_HEADER``); its right-most value is used.
``cloudflare``
    Cloudflare connects to Google's front end, so the right-most entry is a
    Cloudflare egress address. Only when it is in Cloudflare's published ranges
    are ``CF-Connecting-IP`` and ``CF-IPCountry`` believed; a client that goes
    around Cloudflare straight to the function is identified by its own address,
    with no country.
``direct``
    Nothing in front (the local stack): the TCP peer is the client; every
    forwarding header is ignored.

Header names are looked up in lower case (:func:`client_info` folds them).
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.countries import is_country_code

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN_IP = "unknown"
"""The client address when the front door's chain holds no address where one must be."""


class FrontDoor(enum.StrEnum):
    """What sits in front of the functions (``PACK391_FRONT_DOOR``)."""

    GOOGLE = "google"
    LOAD_BALANCER = "load-balancer"
    CLOUDFLARE = "cloudflare"
    DIRECT = "direct"


DEFAULT_TRUSTED_HOPS = {
    FrontDoor.GOOGLE: 0,
    FrontDoor.LOAD_BALANCER: 1,
    FrontDoor.CLOUDFLARE: 0,
    FrontDoor.DIRECT: 0,
}
"""Right-most ``X-Forwarded-For`` entries that belong to the front door itself."""


@dataclass(frozen=True)
class FrontDoorConfig:
    mode: FrontDoor
    trusted_hops: int = 0
    """Entries at the right of X-Forwarded-For added by trusted proxies (skipped)."""
    country_header: str = "x-client-region"
    cloudflare: tuple[Network, ...] = ()


@dataclass(frozen=True)
class ClientInfo:
    ip: str
    country: str | None
    fingerprint: str


def parse_networks(
    cidrs: Iterable[str], setting: str = "PACK391_CLOUDFLARE_RANGES"
) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a bad entry is a configuration error."""
    networks = []
    for cidr in cidrs:
        if not isinstance(cidr, str):
            raise ValueError(f"{setting}: {cidr!r} is not an IP or CIDR")
        text = cidr.strip()
        if text:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ValueError(f"{setting}: {text!r} is not an IP or CIDR") from exc
    return tuple(networks)


def front_door_config(
    mode: str, trusted_hops: int, country_header: str, cloudflare: Iterable[str]
) -> FrontDoorConfig:
    """The settings as one value; a bad one raises ValueError naming its param."""
    try:
        door = FrontDoor(mode.strip().lower())
    except ValueError:
        names = ", ".join(d.value for d in FrontDoor)
        raise ValueError(f"PACK391_FRONT_DOOR: {mode!r} is not one of {names}") from None
    if trusted_hops < -1 or trusted_hops > 16:
        raise ValueError(f"PACK391_TRUSTED_HOPS: {trusted_hops} is not -1 (the mode's) or 0..16")
    hops = DEFAULT_TRUSTED_HOPS[door] if trusted_hops == -1 else trusted_hops
    if door is FrontDoor.CLOUDFLARE and not parse_networks(cloudflare):
        # every visitor would be one of Cloudflare's egress addresses: one shared bucket
        raise ValueError("PACK391_CLOUDFLARE_RANGES: empty in cloudflare mode")
    return FrontDoorConfig(
        mode=door,
        trusted_hops=hops,
        country_header=country_header.strip().lower(),
        cloudflare=parse_networks(cloudflare) if door is FrontDoor.CLOUDFLARE else (),
    )


def _ip(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _inside(ip: Address, networks: tuple[Network, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def _edge_entry(peer: str | None, headers: Mapping[str, str], hops: int) -> str:
    """The address that connected to the outermost trusted hop: the entry ``hops`` places
    from the right of X-Forwarded-For (never further left than the chain's start).
    Without the header (a request that did not come through the front door), the peer."""
    raw = headers.get("x-forwarded-for")
    if raw is None:
        return peer or UNKNOWN_IP
    entries = [part.strip() for part in raw.split(",")]
    entry = entries[max(0, len(entries) - 1 - hops)]
    ip = _ip(entry)
    return str(ip) if ip is not None else UNKNOWN_IP


def _right_most(value: str | None) -> str:
    return (value or "").split(",")[-1].strip().upper()


def client_ip_and_country(
    peer: str | None, headers: Mapping[str, str], door: FrontDoorConfig
) -> tuple[str, str | None]:
    """The client's IP and country (ISO alpha-2 or None) behind ``door``;
    ``headers`` must have lower-case names."""
    if door.mode is FrontDoor.DIRECT:
        ip = _ip(peer)
        return (str(ip) if ip is not None else peer or UNKNOWN_IP), None
    edge = _edge_entry(peer, headers, door.trusted_hops)
    if door.mode is FrontDoor.GOOGLE:
        return edge, None
    if door.mode is FrontDoor.LOAD_BALANCER:
        country = _right_most(headers.get(door.country_header))
        return edge, country if is_country_code(country) else None
    edge_ip = _ip(edge)
    if edge_ip is None or not _inside(edge_ip, door.cloudflare):
        return edge, None  # not through Cloudflare: its headers are the client's own words
    client = _ip(headers.get("cf-connecting-ip"))
    country = (headers.get("cf-ipcountry") or "").strip().upper()
    return (
        str(client) if client is not None else edge,
        country if is_country_code(country) else None,
    )


def fingerprint(headers: Mapping[str, str]) -> str:
    """A short, stable id of the client software (user agent and language)."""
    raw = f"{headers.get('user-agent') or ''}|{headers.get('accept-language') or ''}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def client_info(peer: str | None, headers: Mapping[str, str], door: FrontDoorConfig) -> ClientInfo:
    """Everything above from the socket peer and the request headers (any case)."""
    headers = {name.lower(): value for name, value in headers.items()}
    ip, country = client_ip_and_country(peer, headers, door)
    return ClientInfo(ip=ip, country=country, fingerprint=fingerprint(headers))
