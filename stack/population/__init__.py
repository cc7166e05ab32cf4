"""A world that looks like launch day: a seeded population on a simulated clock,
driven through the real protection core, under one attack at a time.

The population (sizes in :class:`PopulationConfig`):

- carrier-NAT IPv4 addresses with hundreds of users each (mostly established, some signed
  in minutes ago, some anonymous; a tenth of their requests arrive IPv4-mapped,
  ``::ffff:a.b.c.d``);
- IPv6 users, each in their own /64, every request from a fresh /128 (privacy addresses);
- an app backend (a service principal) checking limits for its users from one egress
  address, as ``pack391_checkRateLimit`` with ``subject`` does: the front door with
  :attr:`Credential.SERVICE`, then the decision about the user at the user's own address,
  not counted at the door;
- honest heavy users, evenly spaced at ``heavy_share_of_limit`` of one class's limit each.

The attacks (:class:`Scenario`), each run alongside the same legitimate traffic after
``warmup_min`` minutes of it (the detector's baseline): a single-source token-less flood
(half of it IPv4-mapped), a distributed token-less flood (thousands of addresses, each
under the pre-auth limit), a User-Agent-rotating flood, sock puppets (fresh accounts at
one call a minute each plus a token-less flood from the same address), an IPv6 /64 sweep,
self-reported brute force (an account behind a NAT reporting its own failures),
credential stuffing seen server-side (from its own address, and from a NAT), and a
direct-to-origin bypass with forged forwarding headers in ``load-balancer`` and
``cloudflare`` modes. :data:`Scenario.NONE` is the control: the legitimate traffic alone.

What a request does is what the deployed front door does, against the real Redis and
Firestore: ``RateLimiter.door`` on one of ``instances`` limiters (round robin, the same
Redis: the fleet-wide pre-auth backstop is exercised), then ``decide`` for a valid token.
A token-less request the door lets through costs an invocation (answered
``UNAUTHENTICATED``): it counts as admitted. Every simulated second each instance flushes
its counters and re-reads its block lists (the real ones do both about once a real
second); the detector (``ProtectionService.detect``) runs once a simulated minute at
``detect_at_sec``.

The clock: a run starts at the current real minute and runs ahead of real time (a run of
a few simulated minutes takes seconds). Redis TTLs are real time, set from simulated
differences: GCRA keys then live longer in real time than in simulated time, which
changes nothing (a bucket whose TAT is in the past is a full bucket), and per-minute
counters (TTL 5 min to 2 h, real) outlive the run. No key expires during a run, so memory
growth is the growth of the whole run.

Figures per attack (:class:`AttackRow`, :func:`format_table`): legitimate requests and
how many were denied; established users denied because of someone else's traffic (a
denial for any reason but ``user_limit``, or ``user_limit`` while the user's own requests
of that class in the trailing 60 s were within the class's normal limit, as under DDoS
mode); the attack's requests; its first detection (simulated seconds after it began: the
first detector run with a critical detection that names one of the attack's keys or is a
global signal; for brute force, the first block); the attack's requests admitted from the
first full minute after detection; Redis ``used_memory`` growth over the attack, net of
the control run's growth over the same window, and per million attack requests
(extrapolated linearly from the run).
"""

from __future__ import annotations

from stack.population.model import (
    ATTACK_ADMITTED_MAX_PCT,
    ATTACKS,
    LEGIT_DENIED_MAX_PCT,
    MEMORY_BUDGET_PER_MILLION_BYTES,
    MEMORY_JUDGED_MIN_REQUESTS,
    PopulationConfig,
    Scenario,
    User,
)
from stack.population.report import AttackRow, all_passed, format_table, rows_json
from stack.population.run import Population

__all__ = [
    "ATTACKS",
    "ATTACK_ADMITTED_MAX_PCT",
    "LEGIT_DENIED_MAX_PCT",
    "MEMORY_BUDGET_PER_MILLION_BYTES",
    "MEMORY_JUDGED_MIN_REQUESTS",
    "AttackRow",
    "Population",
    "PopulationConfig",
    "Scenario",
    "User",
    "all_passed",
    "format_table",
    "rows_json",
]
