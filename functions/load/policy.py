"""Load-test safety decisions: pure functions of data."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def target_problem(target: str, allowlist: list[str], local_mode: bool) -> str | None:
    """Why ``target`` may not be load-tested, or None. Loopback is allowed in local mode
    only; other hosts must match an allowlist entry exactly, or end with an entry that
    starts with a dot (``.staging.example.com``)."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https"):
        return "target must be an http(s) URL"
    host = (parts.hostname or "").lower()
    if not host:
        return "target has no host"
    if parts.query or parts.fragment or parts.username:
        return "target must be a base URL without query, fragment or credentials"
    if is_loopback(host):
        return None if local_mode else "loopback targets are allowed in local mode only"
    for entry in (e.strip().lower() for e in allowlist if e.strip()):
        if host == entry or (entry.startswith(".") and host.endswith(entry)):
            return None
    return f"host {host} is not in PACK391_LOAD_TARGET_ALLOWLIST"


def cap_problem(new_peak_rps: float, running_peaks_rps: list[float], cap_rps: float) -> str | None:
    """Why a run of ``new_peak_rps`` would break the global cap, or None."""
    total = new_peak_rps + sum(running_peaks_rps)
    if total > cap_rps:
        return (
            f"running load tests would reach {total:.0f} RPS, over the global cap of "
            f"{cap_rps:.0f} RPS"
        )
    return None


def parse_allowlist(raw: str) -> list[str]:
    return [entry.strip() for entry in raw.split(",") if entry.strip()]


@dataclass(frozen=True)
class Admission:
    """A run's share of the global RPS cap, held until it ends or its deadline passes."""

    run_id: str
    rps: float
    deadline: datetime
    """Start + duration + grace: a run whose shards stopped reporting is reaped after it."""


@dataclass(frozen=True)
class AdmissionVerdict:
    admitted: bool
    held: dict[str, Admission]
    """What the ledger holds afterwards (the new run included when admitted)."""
    reaped: tuple[str, ...]
    """Runs past their deadline, dropped from the ledger (their share released)."""
    problem: str | None = None


def admit_run(
    ledger: Mapping[str, Admission], new: Admission, now: datetime, cap_rps: float
) -> AdmissionVerdict:
    """Admit ``new`` only while the runs still held stay, with it, under the cap. Runs past
    their deadline are reaped first: a run whose single-attempt task died never holds the
    cap for ever."""
    held = {run_id: a for run_id, a in ledger.items() if a.deadline > now}
    reaped = tuple(sorted(run_id for run_id in ledger if run_id not in held))
    problem = cap_problem(new.rps, [a.rps for a in held.values()], cap_rps)
    if problem is not None:
        return AdmissionVerdict(False, held, reaped, problem)
    return AdmissionVerdict(True, {**held, new.run_id: new}, reaped)
