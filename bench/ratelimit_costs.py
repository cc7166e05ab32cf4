"""What one rate-limit decision costs Redis, per kind of request: the figures the capacity
model of docs/scaling-out.md is computed from (part of ``make bench-ratelimit``).

For each case (a class, signed in or not, a trusted principal, a capped country) it runs
``decisions`` decisions of distinct subjects (nobody denied) through
``RateLimiter.decide``, flushes the detector's counters, and reads from every Redis server
involved (one, or each primary of a cluster):

- ``slots`` and ``keys``: the scripts one decision sends and the keys they touch
  (``RateLimiter.plan``);
- ``redisCommands``: commands the servers executed per decision (``INFO commandstats``,
  which counts the commands a script runs too; the counters' flushes included, amortized);
- ``redisCpuUs``: the servers' CPU per decision (``INFO cpu``, user + system, all servers);
- ``clientCpuUs``: this process's CPU per decision (the instance's side);
- ``netBytes``: bytes the servers received and sent per decision (``INFO stats``), what
  crosses the VPC connector (or Direct VPC egress) per decision.

Servers' statistics are reset before each case (``CONFIG RESETSTAT``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from shared.ratelimit.client import ClientInfo
from shared.ratelimit.geo import GeoRules
from shared.ratelimit.limiter import RateLimiter, Subject
from shared.ratelimit.policy import EndpointClass, GeoRule

CAPPED_COUNTRY = "BR"


class CapGeo(GeoRules):
    """One country with a region cap no case reaches; no Firestore."""

    def __init__(self) -> None:
        """Nothing to wire: no Firestore client, no cache."""

    def get(self, country: str | None) -> GeoRule | None:
        if country == CAPPED_COUNTRY:
            return GeoRule(CAPPED_COUNTRY, 1.0, 10_000_000)
        return None


@dataclass(frozen=True)
class Case:
    name: str
    endpoint_class: EndpointClass
    signed_in: bool = True
    staff: bool = False
    country: str | None = None


CASES = (
    Case("swipe, signed in", EndpointClass.SWIPE),
    Case("general, signed in", EndpointClass.GENERAL),
    Case("auth, signed in (brute-force guarded)", EndpointClass.AUTH),
    Case("wallet, signed in (guarded, fails closed)", EndpointClass.WALLET),
    Case("payment, signed in (fails closed)", EndpointClass.PAYMENT),
    Case("general, no user", EndpointClass.GENERAL, signed_in=False),
    Case("general, capped country", EndpointClass.GENERAL, country=CAPPED_COUNTRY),
    Case("ops caller (staff)", EndpointClass.GENERAL, staff=True),
)


def _ip(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def _servers_stats(servers: Sequence[redis.Redis]) -> tuple[int, float, int]:
    """Commands executed (without the INFO/CONFIG of this measurement), CPU seconds and
    network bytes in and out, summed over the servers."""
    calls = 0
    cpu = 0.0
    net = 0
    for server in servers:
        stats: dict[str, Any] = server.info("commandstats")
        calls += sum(
            int(v["calls"])
            for k, v in stats.items()
            if k not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
        )
        info: dict[str, Any] = server.info("cpu")
        cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        io: dict[str, Any] = server.info("stats")
        net += int(io["total_net_input_bytes"]) + int(io["total_net_output_bytes"])
    return calls, cpu, net


def measure(
    client: redis.Redis, servers: Sequence[redis.Redis], decisions: int, run: str
) -> dict[str, dict[str, float]]:
    """The cost of each case on ``client``, read from ``servers`` (see the module)."""
    out: dict[str, dict[str, float]] = {}
    for k, case in enumerate(CASES):
        limiter = RateLimiter(client, CapGeo())
        now = datetime.now(UTC)

        def subject(i: int, case: Case = case, k: int = k) -> Subject:
            uid = f"{run}-{k}-{i}" if case.signed_in or case.staff else None
            return Subject(uid, ClientInfo(_ip(k * decisions + i), case.country, "fp"))

        plan = limiter.plan(case.endpoint_class, subject(0), now, staff=case.staff)
        limiter.flush_counters()
        for server in servers:
            server.config_resetstat()
        calls0, cpu0, net0 = _servers_stats(servers)
        began = time.process_time()
        for i in range(decisions):
            decision = limiter.decide(
                case.endpoint_class, subject(i), datetime.now(UTC), staff=case.staff
            )
            if not decision.allowed:
                raise RuntimeError(f"{case.name}: denied ({decision.reason}): not a cost case")
        limiter.flush_counters()
        client_cpu = time.process_time() - began
        calls1, cpu1, net1 = _servers_stats(servers)
        out[case.name] = {
            "slots": len(plan),
            "keys": sum(len(slot.keys) for slot in plan),
            "redisCommands": round((calls1 - calls0) / decisions, 2),
            "redisCpuUs": round((cpu1 - cpu0) / decisions * 1e6, 1),
            "clientCpuUs": round(client_cpu / decisions * 1e6, 1),
            "netBytes": round((net1 - net0) / decisions),
        }
    return out


def render(single: dict[str, dict[str, float]], cluster: dict[str, dict[str, float]]) -> str:
    """The two runs side by side, one row per case."""
    head = (
        f"{'case':44s} {'slots':>5s} {'keys':>4s}  {'redis cmds (1 / cluster)':>24s}  "
        f"{'redis CPU us (1 / cluster)':>26s}  {'client CPU us (1 / cluster)':>27s}"
    )
    rows = [head]
    for name, one in single.items():
        many = cluster.get(name, {})
        rows.append(
            f"{name:44s} {one['slots']:5.0f} {one['keys']:4.0f}  {one['redisCommands']:11.2f} / "
            f"{many.get('redisCommands', float('nan')):10.2f}  "
            f"{one['redisCpuUs']:12.1f} / {many.get('redisCpuUs', float('nan')):11.1f}  "
            f"{one['clientCpuUs']:13.1f} / {many.get('clientCpuUs', float('nan')):11.1f}"
        )
    return "\n".join(rows)
