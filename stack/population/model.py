"""The population's model: the goals, the legitimate traffic's mixes and agents, the
scenarios (:class:`Scenario`), the sizes and rates of a run (:class:`PopulationConfig`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from shared.ratelimit.policy import EndpointClass

# ----------------------------------------------------------------------------- goals

LEGIT_DENIED_MAX_PCT = 0.1
"""Goal: at most this share of legitimate requests denied."""

ATTACK_ADMITTED_MAX_PCT = 1.0
"""Goal: at most this share of an attack's requests admitted from the first full minute
after its detection."""

MEMORY_BUDGET_PER_MILLION_BYTES = 64 * 1024 * 1024
"""Goal, ours ("bounded, with the figure written down"): at most 64 B of Redis per attack
request (64 MiB per million), extrapolated linearly. At that rate a 1 GiB Redis holds what
about 55,000 attack requests a second leave behind within the 5-minute life of the
per-minute lists; per-key state (a zset member, a HyperLogLog per value) costs 100-300 B
per distinct attacker-chosen value, so a flood whose every request is a new value fails."""

MEMORY_JUDGED_MIN_REQUESTS = 5_000
"""Memory is judged only for attacks of at least this many requests: below it, the
allocator's steps and the main dictionary's rehash are larger than the attack's share."""

# ------------------------------------------------------------------- the population

CLASS_MIX: tuple[tuple[EndpointClass, float], ...] = (
    (EndpointClass.GENERAL, 0.55),
    (EndpointClass.SWIPE, 0.30),
    (EndpointClass.AI, 0.08),
    (EndpointClass.WALLET, 0.03),
    (EndpointClass.PAYMENT, 0.02),
    (EndpointClass.AUTH, 0.02),
)
"""Classes of an ordinary user's requests."""

BACKEND_CLASS_MIX: tuple[tuple[EndpointClass, float], ...] = (
    (EndpointClass.SWIPE, 0.40),
    (EndpointClass.GENERAL, 0.30),
    (EndpointClass.AI, 0.20),
    (EndpointClass.WALLET, 0.05),
    (EndpointClass.PAYMENT, 0.05),
)
"""Classes the app backend checks for its users."""

HEAVY_CLASSES = (
    EndpointClass.GENERAL,
    EndpointClass.SWIPE,
    EndpointClass.AI,
    EndpointClass.WALLET,
    EndpointClass.PAYMENT,
    EndpointClass.AUTH,
)

APP_AGENTS = (
    "Avalo/3.4.0 (iPhone15,2; iOS 17.5) Firebase/10.25",
    "Avalo/3.4.0 (Pixel 8; Android 14) Firebase/21.0",
    "Avalo/3.3.2 (SM-A546B; Android 14) Firebase/21.0",
    "Avalo/3.3.2 (iPhone13,1; iOS 16.7) Firebase/10.22",
)
BACKEND_AGENT = "avalo-backend/1.0 (google-cloud-run)"
BACKEND_EGRESS = "192.0.2.250"
BOT_AGENT = "python-requests/2.31.0"


class Scenario(enum.StrEnum):
    """One run: the legitimate population, and at most one attack beside it."""

    NONE = "none"
    """The control: legitimate traffic only (its memory growth is every attack's base)."""
    SINGLE_SOURCE = "single_source"
    """A token-less flood from one address, half of it IPv4-mapped."""
    DISTRIBUTED = "distributed"
    """A token-less flood from thousands of addresses, each under the pre-auth limit."""
    UA_ROTATING = "ua_rotating"
    """A token-less flood from many addresses, a random User-Agent per request."""
    SOCK_PUPPETS = "sock_puppets"
    """25 fresh accounts at one call a minute and a token-less flood, one address."""
    IPV6_SWEEP = "ipv6_sweep"
    """A token-less flood from random /128s of one /64."""
    SELF_REPORTED_BRUTE_FORCE = "self_reported_brute_force"
    """An account behind a NAT trying wallet PINs and reporting its own failures."""
    CREDENTIAL_STUFFING = "credential_stuffing"
    """Logins for many accounts from one address, failures seen by the auth backend."""
    CREDENTIAL_STUFFING_SHARED = "credential_stuffing_shared"
    """The same from a carrier NAT: the address block is held for a human."""
    BYPASS_LOAD_BALANCER = "bypass_load_balancer"
    """load-balancer mode: a token-less flood straight to the function's URL with a forged
    ``X-Forwarded-For`` per request."""
    BYPASS_CLOUDFLARE = "bypass_cloudflare"
    """cloudflare mode: the same with forged ``CF-Connecting-IP`` and origin header."""


ATTACKS = tuple(s for s in Scenario if s is not Scenario.NONE)


@dataclass(frozen=True)
class PopulationConfig:
    """Sizes and rates of a run; the defaults are the benchmark's (about 3,000 legitimate
    requests a simulated minute)."""

    seed: int = 391
    nat_addresses: int = 2
    users_per_nat: int = 300
    """Users behind each carrier-NAT address."""
    nat_user_per_min: float = 2.5
    new_share: float = 0.10
    """Share of NAT users signed in minutes ago (not established)."""
    anonymous_share: float = 0.05
    """Share of NAT users signed in anonymously (not established)."""
    mapped_share: float = 0.10
    """Share of NAT requests that arrive as IPv4-mapped IPv6 addresses."""
    ipv6_users: int = 150
    ipv6_user_per_min: float = 3.0
    backend_subjects: int = 200
    """Users the app backend checks limits for (half behind the NATs, when there are
    NATs; the others at addresses of their own)."""
    backend_subject_per_min: float = 3.0
    heavy_users_per_class: int = 2
    heavy_share_of_limit: float = 0.85
    instances: int = 3
    warmup_min: int = 3
    """Minutes of legitimate traffic before the attack: the detector's baseline."""
    attack_min: int = 3
    detect_at_sec: tuple[int, ...] = (15,)
    """Seconds of each simulated minute at which the detector runs."""
    attack_scale: float = 1.0
    """Multiplies every attack's rate (and the floods' address counts)."""
    flood_per_min: float = 1500.0
    """A single source's token-less requests per minute (single source, sock puppets,
    /64 sweep, bypass)."""
    distributed_ips_factor: float = 8.0
    """Flooding addresses, as a multiple of the baseline's distinct addresses."""
    distributed_per_address_per_min: float = 12.0
    ua_rotating_per_address_per_min: float = 20.0
    brute_force_per_min: float = 9.0
    """A brute-forcer's wallet PIN attempts per minute, evenly spaced (a script), under
    the wallet class's limit of 10."""
    stuffing_per_min: float = 60.0
    memory_budget_per_million_bytes: int = MEMORY_BUDGET_PER_MILLION_BYTES
    memory_judged_min_requests: int = MEMORY_JUDGED_MIN_REQUESTS

    @classmethod
    def small(cls) -> PopulationConfig:
        """The tests' population: one NAT of 60 users, 30 IPv6 users, 20 backend subjects,
        one heavy user per class (about 650 requests a simulated minute), two minutes of
        attack after three of warm-up, the detector at second 10 (the earliest it judges
        the current minute)."""
        return cls(
            nat_addresses=1,
            users_per_nat=60,
            nat_user_per_min=3.0,
            ipv6_users=30,
            backend_subjects=20,
            heavy_users_per_class=1,
            attack_min=2,
            detect_at_sec=(10,),
            flood_per_min=1200.0,
        )

    def scaled(self, factor: float) -> PopulationConfig:
        """Every population size and every attack's rate times ``factor``."""
        return replace(
            self,
            users_per_nat=max(25, round(self.users_per_nat * factor)),
            ipv6_users=max(1, round(self.ipv6_users * factor)),
            backend_subjects=max(1, round(self.backend_subjects * factor)),
            heavy_users_per_class=max(1, round(self.heavy_users_per_class * factor)),
            attack_scale=self.attack_scale * factor,
        )


@dataclass(frozen=True)
class User:
    uid: str
    address: str
    """IPv4, or an IPv6 user's /64 (its first four groups; each request adds a /128)."""
    agent: str
    established: bool
    nat: bool = False
    ipv6: bool = False
