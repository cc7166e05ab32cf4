"""How the simulated requests reach the protection core: each front door's headers, and
a geo-rule source that needs no Firestore."""

from __future__ import annotations

from shared.ratelimit.client import (
    ClientInfo,
    FrontDoorConfig,
    client_info,
    front_door_config,
)
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.policy import GeoRule
from stack.platform.frontdoor import (
    DEFAULT_FORWARDING_RULE,
    DEFAULT_ORIGIN_HEADER,
    Headers,
    Mode,
    forwarded_headers,
)
from stack.population.model import Scenario

GOOGLE_FRONT_END = "169.254.1.1"
"""The TCP peer a deployed function sees: Google's front end (never the client)."""
CLOUDFLARE_EGRESS = "173.245.48.7"
"""A Cloudflare egress address (inside :data:`CLOUDFLARE_RANGES`)."""
CLOUDFLARE_RANGES = ("173.245.48.0/20", "103.21.244.0/22", "2400:cb00::/32")
ORIGIN_SECRET = "5e3b2c1d0f9a8b7c6d5e4f3a2b1c0d9e"
"""cloudflare mode: the secret our zone's Transform Rule sets (the stand-in's)."""


class NoGeo(GeoRules):
    """No country rules, without touching Firestore."""

    def __init__(self) -> None:
        """Nothing to wire."""

    def get(self, country: str | None) -> GeoRule | None:
        return None


class FrontEnd:
    """How requests reach the function in one front-door mode: the headers each front end
    adds (:func:`stack.platform.frontdoor.forwarded_headers`) and the client the core makes of them
    (:func:`shared.ratelimit.client.client_info`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.config: FrontDoorConfig = front_door_config(
            mode,
            -1,
            "x-client-region",
            CLOUDFLARE_RANGES,
            origin_secret=ORIGIN_SECRET,
            origin_header=DEFAULT_ORIGIN_HEADER,
            deployed=mode != "direct",  # as deployed: each front door's proof is set
            lb_addresses=[DEFAULT_FORWARDING_RULE],
        )
        self._cache: dict[tuple[str, str], ClientInfo] = {}

    def through(self, address: str, agent: str, cache: bool = True) -> ClientInfo:
        """A client at ``address`` coming the way the mode's front end forwards it."""
        cached = self._cache.get((address, agent)) if cache else None
        if cached is not None:
            return cached
        sent: Headers = [("User-Agent", agent)]
        if self.mode == "direct":
            client = client_info(address, dict(sent), self.config)
        elif self.mode == "load-balancer":
            hops = forwarded_headers(Mode.LOAD_BALANCER, sent, address, {})
            client = client_info(GOOGLE_FRONT_END, dict(hops), self.config)
        elif self.mode == "cloudflare":
            zone = forwarded_headers(
                Mode.CLOUDFLARE, sent, address, {}, origin_secret=ORIGIN_SECRET
            )
            hops = forwarded_headers(Mode.GOOGLE, zone, CLOUDFLARE_EGRESS, {})
            client = client_info(GOOGLE_FRONT_END, dict(hops), self.config)
        else:
            hops = forwarded_headers(Mode.GOOGLE, sent, address, {})
            client = client_info(GOOGLE_FRONT_END, dict(hops), self.config)
        if cache:
            self._cache[(address, agent)] = client
        return client

    def around(self, address: str, headers: Headers) -> ClientInfo:
        """A client at ``address`` calling the function's own URL, past any front end of
        ours, with ``headers`` of its own choosing: Google's front end appends its address."""
        if self.mode == "direct":
            return client_info(address, dict(headers), self.config)
        hops = forwarded_headers(Mode.GOOGLE, headers, address, {})
        return client_info(GOOGLE_FRONT_END, dict(hops), self.config)


def mode_of(scenario: Scenario) -> str:
    if scenario is Scenario.BYPASS_LOAD_BALANCER:
        return "load-balancer"
    if scenario is Scenario.BYPASS_CLOUDFLARE:
        return "cloudflare"
    return "direct"
