"""Traffic protection (``pack391-ddos``: :mod:`shared.ratelimit` and :mod:`functions.ddos`):
limits per endpoint class, the front door, brute force, panic passes, geo rules, and
the detector's signals and automatic mitigation.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "ADDRESS_QUOTA_BASE_USERS",
    "ADDRESS_QUOTA_MAX_USERS",
    "ANON_LOCKDOWN_SEC",
    "ANON_REFUSE_SEC",
    "BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS",
    "BRUTE_FORCE_ADDRESS_OFFENCE_MEMORY_SEC",
    "BRUTE_FORCE_BLOCK_SEC",
    "BRUTE_FORCE_GUARDED_CLASSES",
    "BRUTE_FORCE_MAX_FAILURES_COUNT",
    "BRUTE_FORCE_OFFENCE_MEMORY_SEC",
    "BRUTE_FORCE_SUCCESS_RESETS_PER_WINDOW",
    "BRUTE_FORCE_WINDOW_SEC",
    "DDOS_BASELINE_WINDOW_MIN",
    "DDOS_BLAST_RADIUS_MAX_PCT",
    "DDOS_BLOCK_LIST_REFRESH_SEC",
    "DDOS_BLOCK_TOP_SOURCES_COUNT",
    "DDOS_BOT_SCORE_LOW_SHARE_PCT",
    "DDOS_BOT_SWARM_MAX_USUAL_SHARE_PCT",
    "DDOS_BOT_SWARM_MIN_IPS",
    "DDOS_BOT_SWARM_MIN_SHARE_PCT",
    "DDOS_DISTRIBUTED_IPS_FACTOR",
    "DDOS_DISTRIBUTED_MAX_TOP_IP_SHARE_PCT",
    "DDOS_FINGERPRINT_HISTORY_MIN",
    "DDOS_MIN_BASELINE_MINUTES",
    "DDOS_MIN_DISTINCT_IPS_PER_MIN",
    "DDOS_MIN_REQUESTS_PER_MIN",
    "DDOS_MODE_DURATION_SEC",
    "DDOS_MODE_LIMIT_FACTOR",
    "DDOS_PARTIAL_MINUTE_MIN_SEC",
    "DDOS_SHARED_ADDRESS_MIN_USERS",
    "DDOS_SHARED_PER_USER_PER_MIN",
    "DDOS_SINGLE_SOURCE_PER_MIN",
    "DDOS_SINGLE_USER_PER_MIN",
    "DDOS_SOURCE_BLOCK_SEC",
    "DDOS_SPIKE_CRITICAL_FACTOR",
    "DDOS_SPIKE_FACTOR",
    "DDOS_STATS_TTL_SEC",
    "DDOS_TOKENLESS_SHARE_PCT",
    "DDOS_USERS_PER_ADDRESS_TOP_COUNT",
    "GEO_CACHE_TTL_SEC",
    "GEO_LOAD_TIMEOUT_SEC",
    "GEO_MULTIPLIER_MAX",
    "PANIC_PASSES_PER_DAY_COUNT",
    "PANIC_PASS_DURATION_SEC",
    "PREAUTH_FLEET_PER_MIN",
    "PREAUTH_MAX_TRACKED_COUNT",
    "PREAUTH_PER_MIN",
    "RATE_LIMIT_FAIL_CLOSED_CLASSES",
    "RATE_LIMIT_KEY_GRACE_SEC",
    "RATE_LIMIT_NEAR_LIMIT_PCT",
    "RATE_LIMIT_PERIOD_SEC",
    "RATE_LIMIT_PER_MIN",
    "RATE_LIMIT_UNAVAILABLE_RETRY_SEC",
    "REDIS_MEMORY_ALERT_PCT",
]

# Limits per endpoint class -----------------------------------------------------------------------

RATE_LIMIT_PER_MIN: Final[MappingProxyType[str, int]] = MappingProxyType(
    {
        "auth": 5,
        "wallet": 10,
        "payment": 3,
        "ai": 50,
        "swipe": 100,
        "general": 200,
        "staff": 600,
        "service": 1200,
    }
)
"""Requests per minute allowed per user and per client IP, by endpoint class. ``staff``
is the class of ops and admin callers of ops and admin functions: counted per user
only, exempt from IP blocks, IP buckets and DDoS mode. ``service`` is the class
of a trusted app backend's own calls (``service: true`` claim), counted per principal the
same way, never by its egress address."""

RATE_LIMIT_PERIOD_SEC: Final[int] = 60
"""The period the per-class limits are counted over (they are per minute)."""

RATE_LIMIT_KEY_GRACE_SEC: Final[float] = 1.0
"""How long a bucket's key outlives its TAT in Redis. A key expires on Redis's clock, a
decision is made at the caller's ``now``: a decision whose ``now`` is older than Redis's
clock (an instance's clock behind, a call that queued) would find a bucket that expired
early and count from empty. The grace covers that much lag; it costs that much longer
memory per key, so it stays short (an attacker rotating addresses pays for every key)."""

RATE_LIMIT_NEAR_LIMIT_PCT: Final[float] = 80.0
"""Share of a limit above which a request is counted as near-limit."""

RATE_LIMIT_FAIL_CLOSED_CLASSES: Final[frozenset[str]] = frozenset({"auth", "wallet", "payment"})
"""Classes denied (UNAVAILABLE) while Redis is down; the others are allowed (fail open)."""

RATE_LIMIT_UNAVAILABLE_RETRY_SEC: Final[float] = 2.0
"""``retryAfterSec`` of a fail-closed class's UNAVAILABLE answer while Redis is down."""

# The front door: keys that match who is really there ---------------------------------------------

ADDRESS_QUOTA_BASE_USERS: Final[int] = 20
"""An address's own bucket holds this many users' limits even with no established user
seen behind it: signed-in traffic is limited per user; the address bucket only stops one
address from sending more than a crowd would."""

ADDRESS_QUOTA_MAX_USERS: Final[int] = 2000
"""...and at most this many users' limits, however many established users it has (a
carrier NAT puts hundreds of subscribers behind one IPv4 address)."""

PREAUTH_PER_MIN: Final[int] = 60
"""Requests per minute one address may send without a valid ID token (no token, a bad
one, the wrong role) to one function instance: checked in process at the front door,
before the token is verified, with no Redis round trip."""

PREAUTH_FLEET_PER_MIN: Final[int] = 120
"""...and across every instance in a minute: the backstop read back from Redis with the
counters' own flush (about once a second), so a fleet of 100 instances does not give one
address 100 buckets."""

PREAUTH_MAX_TRACKED_COUNT: Final[int] = 50_000
"""Most addresses one instance keeps a pre-auth bucket for; beyond it, full (expired)
buckets are dropped first, then the oldest."""

DDOS_BLOCK_LIST_REFRESH_SEC: Final[float] = 1.0
"""Each instance re-reads the list of blocked addresses at most this often; the front
door checks it before token verification, with no Redis round trip per request."""

# Brute force -------------------------------------------------------------------------------------

BRUTE_FORCE_MAX_FAILURES_COUNT: Final[int] = 5
"""Failed wallet/auth attempts within the window that trigger a block."""

BRUTE_FORCE_WINDOW_SEC: Final[int] = 15 * 60
"""Window over which failed attempts are counted."""

BRUTE_FORCE_BLOCK_SEC: Final[tuple[int, ...]] = (60 * 60, 24 * 60 * 60)
"""Block lengths for the first, second (and later) offences: 1 h, then 24 h."""

BRUTE_FORCE_GUARDED_CLASSES: Final[frozenset[str]] = frozenset({"auth", "wallet", "payment"})
"""Classes a brute-force block (of the user or the IP) denies."""

BRUTE_FORCE_OFFENCE_MEMORY_SEC: Final[int] = 30 * 24 * 60 * 60
"""How long earlier offences count towards a longer block."""

BRUTE_FORCE_SUCCESS_RESETS_PER_WINDOW: Final[int] = 3
"""A reported success clears the caller's own failure window at most this many times per
window; later success reports change nothing (and never touch the address's window)."""

BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS: Final[int] = 5
"""Distinct accounts with a server-observed failure from one address within the window
that block the address (the credential-stuffing signature); a client's own reports never
feed the address."""

BRUTE_FORCE_ADDRESS_OFFENCE_MEMORY_SEC: Final[int] = 7 * 24 * 60 * 60
"""How long an address's brute-force offences are remembered for escalation: shorter than
a user's, since a /64 or a carrier address changes hands."""

# Panic passes ------------------------------------------------------------------------------------

PANIC_PASS_DURATION_SEC: Final[int] = 5 * 60
"""How long one emergency (priority-lane) pass lasts."""

PANIC_PASSES_PER_DAY_COUNT: Final[int] = 3
"""Passes one user may take per UTC day."""

# Geo rules ---------------------------------------------------------------------------------------

GEO_CACHE_TTL_SEC: Final[int] = 30
"""How long an instance trusts its in-process copy of the geo throttle rules: a
change applies everywhere within this time."""

GEO_LOAD_TIMEOUT_SEC: Final[float] = 5.0
"""The background read of the geo rules gives up after this long (and keeps the last
rules); requests never wait for it beyond the Redis budget."""

GEO_MULTIPLIER_MAX: Final[float] = 10.0
"""Largest per-country multiplier an admin may set (0 < multiplier <= this)."""

# Detection ---------------------------------------------------------------------------------------

DDOS_STATS_TTL_SEC: Final[int] = 2 * 60 * 60
"""Per-minute counters are kept this long (baseline window plus the last hour)."""

DDOS_BASELINE_WINDOW_MIN: Final[int] = 30
"""Minutes of history the traffic baseline is the median of (a median, so the
minutes of an ongoing attack do not raise it)."""

DDOS_MIN_BASELINE_MINUTES: Final[int] = 3
"""Minutes of history the detector needs before DDoS mode may come on by itself: before
that, the usual traffic (and so the mode's blast radius) is unknown, and a launch's
first busy minutes look like a spike; the mode is held for a human (the lockdown of
token-less traffic, which costs no signed-in user anything, still applies)."""

DDOS_MIN_REQUESTS_PER_MIN: Final[int] = 600
"""Floor of the baseline: below this total nothing is a spike (quiet hours, fresh deploys)."""

DDOS_MIN_DISTINCT_IPS_PER_MIN: Final[int] = 50
"""Floor of the distinct-IP baseline."""

DDOS_PARTIAL_MINUTE_MIN_SEC: Final[int] = 10
"""The detector also judges the current minute once this much of it has passed,
extrapolating its counts, so an attack is seen within a minute of its start."""

DDOS_SPIKE_FACTOR: Final[float] = 5.0
"""Total requests above this multiple of the baseline is a traffic spike (high)."""

DDOS_SPIKE_CRITICAL_FACTOR: Final[float] = 10.0
"""... and above this multiple, critical (auto-mitigated)."""

DDOS_DISTRIBUTED_IPS_FACTOR: Final[float] = 5.0
"""Distinct IPs above this multiple of their baseline, with a spike, is a distributed attack."""

DDOS_DISTRIBUTED_MAX_TOP_IP_SHARE_PCT: Final[float] = 5.0
"""... when no single IP carries more than this share of the traffic (each source modest)."""

DDOS_BOT_SWARM_MIN_IPS: Final[int] = 50
"""One user-agent fingerprint seen from at least this many IPs in a minute ..."""

DDOS_BOT_SWARM_MIN_SHARE_PCT: Final[float] = 30.0
"""... carrying at least this share of the traffic ..."""

DDOS_BOT_SWARM_MAX_USUAL_SHARE_PCT: Final[float] = 10.0
"""... when its usual share (median of the last minutes) is below this, is a bot swarm.
A fingerprint that always carries most traffic is the app itself, not a swarm."""

DDOS_FINGERPRINT_HISTORY_MIN: Final[int] = 4
"""Minutes of fingerprint history kept and compared against (top lists live 5 minutes)."""

DDOS_BOT_SCORE_LOW_SHARE_PCT: Final[float] = 50.0
"""A minute where at least this share of requests carried a proven Cloudflare bot score
under 30 is a bot swarm (critical in a traffic spike): Cloudflare's verdict, counted only
through your own zone (``PACK391_CLOUDFLARE_ORIGIN_SECRET``)."""

DDOS_TOKENLESS_SHARE_PCT: Final[float] = 50.0
"""A global signal whose minute carried at least this share of requests without a valid
token is a token-less attack: the lockdown alone answers it, and the limits of signed-in
users stay as they are (no DDoS mode)."""

DDOS_SINGLE_SOURCE_PER_MIN: Final[int] = 600
"""One IP sending more than this per minute is a single-source flood (critical)."""

DDOS_SHARED_ADDRESS_MIN_USERS: Final[int] = 20
"""An address that carried at least this many distinct signed-in users in the minute is
shared (a NAT, a campus, a front end): it is never blocked automatically; its flooding
users are blocked instead."""

DDOS_SHARED_PER_USER_PER_MIN: Final[float] = 60.0
"""A shared address whose rate is at most this per established user behind it is
explained by its users (a busy carrier NAT): no action, no alert."""

DDOS_SINGLE_USER_PER_MIN: Final[int] = 600
"""One signed-in user sending more than this per minute (from a shared address) is
blocked as a flooding source."""

DDOS_USERS_PER_ADDRESS_TOP_COUNT: Final[int] = 10
"""Heaviest users looked at behind one shared address."""

REDIS_MEMORY_ALERT_PCT: Final[float] = 80.0
"""The DDoS detector alerts (every minute) when a Redis of traffic protection is at this
share of its ``maxmemory`` or more."""

# Mitigation --------------------------------------------------------------------------------------

DDOS_MODE_DURATION_SEC: Final[int] = 15 * 60
"""How long auto-mitigation keeps DDoS mode on (extended while attacks go on)."""

DDOS_MODE_LIMIT_FACTOR: Final[float] = 0.5
"""Limits are multiplied by this in DDoS mode (panic-pass holders excepted)."""

DDOS_SOURCE_BLOCK_SEC: Final[int] = 60 * 60
"""How long auto-mitigation blocks a flooding source."""

DDOS_BLOCK_TOP_SOURCES_COUNT: Final[int] = 10
"""At most this many sources are blocked per detection."""

DDOS_BLAST_RADIUS_MAX_PCT: Final[float] = 5.0
"""An automatic action that would deny more than this share of legitimate traffic
(distinct users behind a blocked address, or baseline requests that halved limits
would deny) is not applied: it is held, and an alert asks a human."""

ANON_REFUSE_SEC: Final[int] = 60 * 60
"""How long an address whose block is held (shared, or over the blast-radius cap) stays
refused for traffic without a valid token: the narrow action that hurts no signed-in
user."""

ANON_LOCKDOWN_SEC: Final[int] = 15 * 60
"""How long a lockdown lasts (every request without a valid token refused at the front
door): the answer to every global signal, extended while it goes on. No callable of this
bundle serves a caller without a token, and the Firebase SDKs refresh ID tokens before
they expire, so legitimate traffic without one is a rounding error."""
