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
    Cloudflare egress address. Cloudflare's ranges are no proof on their own
    (anyone's Worker sends from them), so ``CF-Connecting-IP`` and ``CF-IPCountry``
    (and ``cf-bot-score``) are believed only when that entry is in Cloudflare's
    published ranges *and* the request carries the origin secret your zone's
    Transform Rule sets (``PACK391_CLOUDFLARE_ORIGIN_SECRET`` in the header
    ``PACK391_CLOUDFLARE_ORIGIN_HEADER``, compared in constant time); a client that
    goes around your zone is identified by its own address, with no country.
    Deployed, cloudflare mode without the secret is a configuration error; off a
    deployed instance the range check alone is used (with a warning in the log).
``direct``
    Nothing in front (the local stack): the TCP peer is the client; every
    forwarding header is ignored. Refused on a deployed function (``K_SERVICE`` set,
    no emulator), where the peer is Google's front end, the same for every client.

Header names are looked up in lower case (:func:`client_info` folds them).

Whatever the mode, the address is then turned into a *source key*
(:func:`source_key`), the one name every bucket, counter and block uses: an
IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is the IPv4 address it carries, and
an IPv6 address is its /64 network (``2001:db8:1:2::/64``; ``PACK391_IPV6_PREFIX``),
because one /64 is what a single subscriber or server is given, as Cloudflare's rate
limiting counts IPv6 clients by their /64: keyed per /128, one host would have 2^64
fresh identities.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.config import (
    CLOUDFLARE_ORIGIN_HEADER,
    CLOUDFLARE_ORIGIN_SECRET,
    LB_ADDRESSES,
    ORIGIN_SECRET_MIN_CHARS,
    is_deployed_instance,
)
from shared.countries import is_country_code

log = logging.getLogger("pack391.frontdoor")

DEFAULT_ORIGIN_HEADER = "x-pack391-origin-secret"
"""cloudflare mode: the header the zone's Transform Rule sets to the origin secret
(``PACK391_CLOUDFLARE_ORIGIN_HEADER``'s default, in lower case)."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_IPV6_PREFIX = 64
"""IPv6 clients are keyed by their /64 (one subscriber's or one server's network)."""

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
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    """IPv6 clients are keyed by this many leading bits (:func:`source_key`)."""
    origin_secret: str = ""
    """cloudflare mode: the secret your zone's Transform Rule sets, proof that a request
    came through your zone (empty: not configured; allowed off a deployed instance only,
    with the range check alone)."""
    origin_header: str = DEFAULT_ORIGIN_HEADER
    """cloudflare mode: the (lower-case) header that carries :attr:`origin_secret`."""
    lb_addresses: tuple[Network, ...] = ()
    """load-balancer mode: the forwarding rule's external addresses. A request whose
    right-most ``X-Forwarded-For`` entry is not one of them did not come through the load
    balancer (a client calling the function's own URL, which Google's front end answers
    with the client's real address on the right): it is keyed by that right-most entry,
    with no country. Empty: not checked (allowed off a deployed instance only)."""


@dataclass(frozen=True)
class ClientInfo:
    ip: str
    """The client's *source key* (:func:`source_key`): an IPv4 address, an IPv6 network
    (``…::/64``) or :data:`UNKNOWN_IP`; every bucket, counter and block is keyed by it."""
    country: str | None
    fingerprint: str
    bot_score: int | None = None
    """Cloudflare's bot score (1: automated ... 99: human) when the request came through
    your zone, proven, and carried one (:func:`cloudflare_bot_score`); else None."""


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


def source_key(address: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The name an address is counted, limited and blocked under: IPv4 as is, an
    IPv4-mapped IPv6 address as the IPv4 address it maps, any other IPv6 address as its
    ``/ipv6_prefix`` network (``2001:db8:1:2::/64``); a network given in that form maps to
    itself; anything else (not an address) is :data:`UNKNOWN_IP`."""
    text = address.strip()
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return UNKNOWN_IP
        if net.num_addresses == 1 or (net.version == 6 and net.prefixlen >= ipv6_prefix):
            text = str(net.network_address)  # one address, or inside one client's network
        else:
            return str(net)
    ip = _ip(text)
    if ip is None:
        return UNKNOWN_IP
    return _key_of(ip, ipv6_prefix)


def _key_of(ip: Address, ipv6_prefix: int) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        if ipv6_prefix >= 128:
            return str(ip)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


def source_network(key: str) -> Network | None:
    """The addresses a source key stands for (an IPv4 /32 or an IPv6 /64), or None."""
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None


def front_door_config(
    mode: str,
    trusted_hops: int,
    country_header: str,
    cloudflare: Iterable[str],
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    *,
    origin_secret: str | None = None,
    origin_header: str | None = None,
    deployed: bool | None = None,
    lb_addresses: Iterable[str] | None = None,
) -> FrontDoorConfig:
    """The settings as one value; a bad one raises ValueError naming its param.

    ``origin_secret``, ``origin_header`` and ``deployed`` default (None) to the
    deployment's own: ``PACK391_CLOUDFLARE_ORIGIN_SECRET``,
    ``PACK391_CLOUDFLARE_ORIGIN_HEADER`` and :func:`shared.config.is_deployed_instance`,
    read when the value is built (once per instance: the middleware caches it).
    Deployed, ``direct`` is refused, and so is ``cloudflare`` without an origin secret."""
    try:
        door = FrontDoor(mode.strip().lower())
    except ValueError:
        names = ", ".join(d.value for d in FrontDoor)
        raise ValueError(f"PACK391_FRONT_DOOR: {mode!r} is not one of {names}") from None
    if trusted_hops < -1 or trusted_hops > 16:
        raise ValueError(f"PACK391_TRUSTED_HOPS: {trusted_hops} is not -1 (the mode's) or 0..16")
    if not 32 <= ipv6_prefix <= 128:
        raise ValueError(f"PACK391_IPV6_PREFIX: {ipv6_prefix} is not 32..128")
    hops = DEFAULT_TRUSTED_HOPS[door] if trusted_hops == -1 else trusted_hops
    if door is FrontDoor.CLOUDFLARE and not parse_networks(cloudflare):
        # every visitor would be one of Cloudflare's egress addresses: one shared bucket
        raise ValueError("PACK391_CLOUDFLARE_RANGES: empty in cloudflare mode")
    if deployed is None:
        deployed = is_deployed_instance()
    if door is FrontDoor.DIRECT and deployed:
        raise ValueError(
            "PACK391_FRONT_DOOR: direct takes the TCP peer for the client, and on a deployed "
            "function the peer is Google's front end, the same for every client: choose "
            "google, load-balancer or cloudflare (direct is for the local stack and tests)"
        )
    secret, header = "", DEFAULT_ORIGIN_HEADER
    if door is FrontDoor.CLOUDFLARE:
        secret, header = _origin_proof(origin_secret, origin_header, deployed=deployed)
    balancers: tuple[Network, ...] = ()
    if door is FrontDoor.LOAD_BALANCER:
        balancers = _balancer_proof(lb_addresses, deployed=deployed)
    return FrontDoorConfig(
        mode=door,
        trusted_hops=hops,
        country_header=country_header.strip().lower(),
        cloudflare=parse_networks(cloudflare) if door is FrontDoor.CLOUDFLARE else (),
        ipv6_prefix=ipv6_prefix,
        origin_secret=secret,
        origin_header=header,
        lb_addresses=balancers,
    )


def _balancer_proof(addresses: Iterable[str] | None, *, deployed: bool) -> tuple[Network, ...]:
    """load-balancer mode: the forwarding rule's addresses, checked; ValueError naming the
    param when none is given on a deployed instance."""
    if addresses is None:
        addresses = LB_ADDRESSES.value
    networks = parse_networks(addresses, "PACK391_LB_ADDRESSES")
    if not networks:
        if deployed:
            raise ValueError(
                "PACK391_LB_ADDRESSES: empty in load-balancer mode on a deployed function: "
                "name the forwarding rule's external address(es), so a client that calls the "
                "function's URL around the load balancer cannot pick its own address"
            )
        log.warning(
            "load-balancer mode without PACK391_LB_ADDRESSES: a client going around the load "
            "balancer would be believed (allowed only off a deployed instance)"
        )
    return networks


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
"""An HTTP field name (RFC 9110 token), lower case."""


def _origin_proof(secret: str | None, header: str | None, *, deployed: bool) -> tuple[str, str]:
    """cloudflare mode: the origin secret and its header, checked; ValueError naming the
    param when the secret is missing on a deployed instance, too short, or the header
    name is not one."""
    secret = (CLOUDFLARE_ORIGIN_SECRET.value if secret is None else secret).strip()
    raw_header = CLOUDFLARE_ORIGIN_HEADER.value if header is None else header
    name = raw_header.strip().lower()
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"PACK391_CLOUDFLARE_ORIGIN_HEADER: {raw_header!r} is not a header name")
    if not secret:
        if deployed:
            raise ValueError(
                "PACK391_CLOUDFLARE_ORIGIN_SECRET: not set in cloudflare mode; without it any "
                "Cloudflare account's Worker sends CF-Connecting-IP and CF-IPCountry from "
                "Cloudflare's ranges. Set the secret and a Transform Rule that sends it in "
                f"{name} (docs/traffic-protection.md, A ceiling on the bill)"
            )
        log.warning(
            "cloudflare mode without PACK391_CLOUDFLARE_ORIGIN_SECRET: Cloudflare's headers "
            "are believed from its ranges alone (allowed only off a deployed instance)"
        )
    elif len(secret) < ORIGIN_SECRET_MIN_CHARS:
        raise ValueError(
            f"PACK391_CLOUDFLARE_ORIGIN_SECRET: shorter than {ORIGIN_SECRET_MIN_CHARS} "
            "characters (openssl rand -hex 32)"
        )
    return secret, name


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


def _through_cloudflare(edge: str, headers: Mapping[str, str], door: FrontDoorConfig) -> bool:
    """Whether a request came through *your* Cloudflare zone: the entry Cloudflare's hop
    appended is in Cloudflare's ranges and, when an origin secret is configured, the
    request carries it (constant-time compare). Neither alone is proof: anyone's Worker
    sends from Cloudflare's ranges, and the range check keeps a leaked secret from
    working from anywhere but Cloudflare."""
    edge_ip = _ip(edge)
    if edge_ip is None or not _inside(edge_ip, door.cloudflare):
        return False
    if not door.origin_secret:
        return True  # not configured: front_door_config allows it off a deployed instance only
    presented = (headers.get(door.origin_header) or "").strip()
    return hmac.compare_digest(presented.encode(), door.origin_secret.encode())


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
        if door.lb_addresses and not _via_balancer(headers, door):
            return _edge_entry(peer, headers, 0), None  # around the balancer: its real address
        country = _right_most(headers.get(door.country_header))
        return edge, country if is_country_code(country) else None
    if not _through_cloudflare(edge, headers, door):
        return edge, None  # not through your zone: its headers are the client's own words
    client = _ip(headers.get("cf-connecting-ip"))
    country = (headers.get("cf-ipcountry") or "").strip().upper()
    return (
        str(client) if client is not None else edge,
        country if is_country_code(country) else None,
    )


def _via_balancer(headers: Mapping[str, str], door: FrontDoorConfig) -> bool:
    """The right-most X-Forwarded-For entry is one of the forwarding rule's addresses."""
    last = _ip((headers.get("x-forwarded-for") or "").split(",")[-1])
    return last is not None and _inside(last, door.lb_addresses)


_BOT_SCORE = re.compile(r"[0-9]{1,2}")


def cloudflare_bot_score(
    peer: str | None, headers: Mapping[str, str], door: FrontDoorConfig
) -> int | None:
    """Cloudflare's bot score (``cf-bot-score``, 1 almost certainly automated to 99 almost
    certainly human; sent with Bot Management by the "Add bot protection headers" Managed
    Transform) when the request came through your zone, with the same proof as its
    address (:func:`_through_cloudflare`), and carries a score in 1..99; else None.
    ``headers`` must have lower-case names."""
    if door.mode is not FrontDoor.CLOUDFLARE:
        return None
    raw = (headers.get("cf-bot-score") or "").strip()
    if not _BOT_SCORE.fullmatch(raw) or not 1 <= int(raw) <= 99:
        return None
    if not _through_cloudflare(_edge_entry(peer, headers, door.trusted_hops), headers, door):
        return None
    return int(raw)


def fingerprint(headers: Mapping[str, str]) -> str:
    """A short, stable id of the client software (user agent and language)."""
    raw = f"{headers.get('user-agent') or ''}|{headers.get('accept-language') or ''}"
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def client_info(peer: str | None, headers: Mapping[str, str], door: FrontDoorConfig) -> ClientInfo:
    """Everything above from the socket peer and the request headers (any case)."""
    headers = {name.lower(): value for name, value in headers.items()}
    ip, country = client_ip_and_country(peer, headers, door)
    key = ip if ip == UNKNOWN_IP else source_key(ip, door.ipv6_prefix)
    return ClientInfo(
        ip=key,
        country=country,
        fingerprint=fingerprint(headers),
        bot_score=cloudflare_bot_score(peer, headers, door),
    )
