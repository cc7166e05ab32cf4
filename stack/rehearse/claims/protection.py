"""The traffic-protection claims: DDoS detection, per-class rate limits, brute force,
and the launch-day population under attack."""

from __future__ import annotations

import math
from typing import Any

from shared import thresholds as t
from stack.constants import DDOS_DETECTION_INTERVAL_SEC
from stack.rehearse.claims.result import ClaimResult, not_run, rounded
from stack.rehearse.recording import Recording


def ddos_detection(rec: Recording) -> ClaimResult:
    """Each scripted attack detected within ``DDOS_DETECTION_INTERVAL_SEC`` of its start,
    by a detection of its kind that was mitigated (a block or DDoS mode)."""
    title = "DDoS detection within 60 s with auto-mitigation"
    attacks = [a for a in rec.acts if a.name.startswith("attack_")]
    if not attacks:
        return not_run("ddos_detection", title, "attack_single")
    detections = rec.docs.get("detections", [])
    rows: list[dict[str, Any]] = []
    failure: tuple[str, str] | None = None
    for attack in attacks:
        kind = str(attack.detail.get("kind"))
        found = sorted(
            (d for d in detections
             if d.get("kind") == kind and float(d.get("detectedAt", 0)) >= attack.started_at),
            key=lambda d: float(d["detectedAt"]),
        )  # fmt: skip
        if not found:
            rows.append({"attack": attack.name, "kind": kind, "detectedAfterSec": None})
            failure = failure or (
                f"{kind} starting at +{attack.started_at - rec.started_at:.0f}s was never detected "
                f"(series attack.rps; docs detections)", "docs detections",
            )  # fmt: skip
            continue
        d = found[0]
        took = float(d["detectedAt"]) - attack.started_at
        ref = f"doc pack391_ddos_detections/{d.get('id')}"
        rows.append({"attack": attack.name, "kind": kind, "detectedAfterSec": rounded(took),
                     "mitigated": bool(d.get("mitigated")), "id": d.get("id"),
                     "attackSecondOfMinute": round(attack.started_at % 60, 1)})  # fmt: skip
        if took > DDOS_DETECTION_INTERVAL_SEC:
            failure = failure or (f"{kind} detected {took:.0f}s after it began ({ref})", ref)
        elif not d.get("mitigated"):
            failure = failure or (f"{kind} detected but not mitigated ({ref}: held)", ref)
    worst = max((float(r["detectedAfterSec"] or 0.0) for r in rows), default=0.0)
    if failure is not None:
        return ClaimResult(
            "ddos_detection",
            title,
            False,
            rounded(worst),
            "s",
            failure[0],
            failure[1],
            {"attacks": rows},
        )
    return ClaimResult(
        "ddos_detection", title, True, rounded(worst), "s",
        "; ".join(f"{r['kind']} detected in {r['detectedAfterSec']:.0f}s, mitigated" for r in rows),
        "docs detections", {"attacks": rows},
    )  # fmt: skip


def effective_limit(cls: str, ddos_mode: bool) -> int:
    """A class's limit per minute; in DDoS mode every class but staff and service is scaled by
    ``DDOS_MODE_LIMIT_FACTOR`` (as ``shared.ratelimit.policy.scaled``: floor, at least 1)."""
    limit = t.RATE_LIMIT_PER_MIN.get(cls, -1)
    if limit < 0 or not ddos_mode or cls in ("staff", "service"):
        return limit
    return max(1, math.floor(limit * t.DDOS_MODE_LIMIT_FACTOR + 1e-9))


def class_enforced(probe: dict[str, Any]) -> bool:
    """A class probe's first denial came after its limit (halved while DDoS mode was on:
    ``ddosMode``) and no later than that plus what GCRA refilled while the probe ran (one
    request per 60/limit seconds), with a ``retryAfterSec``."""
    limit = effective_limit(str(probe.get("class")), bool(probe.get("ddosMode")))
    denied = probe.get("deniedAt")
    if limit < 0 or denied is None or not (probe.get("retryAfterSec") or 0) > 0:
        return False
    refilled = math.floor(float(probe.get("elapsedSec") or 0.0) * limit / t.RATE_LIMIT_PERIOD_SEC)
    return bool(limit + 1 <= int(denied) <= limit + 1 + refilled)


def rate_limits(rec: Recording) -> ClaimResult:
    """Every class denies past its limit (with ``retryAfterSec``), and every callable the
    server lists answers ``RESOURCE_EXHAUSTED`` once its caller's buckets are spent."""
    title = "rate limits on every endpoint"
    rl = rec.docs.get("rateLimits")
    if rl is None:
        return not_run("rate_limits", title, "rate_limits")
    classes = rl.get("classes", [])
    endpoints = rl.get("endpoints", [])
    wrong_class = [c["class"] for c in classes if not class_enforced(c)]
    open_endpoints = [e["name"] for e in endpoints if e.get("status") != "RESOURCE_EXHAUSTED"]
    limited = len(endpoints) - len(open_endpoints)
    detail = {"classes": classes, "endpoints": endpoints}
    missing = sorted(set(t.RATE_LIMIT_PER_MIN) - {c["class"] for c in classes})
    if wrong_class or missing:
        return ClaimResult(
            "rate_limits", title, False, float(limited), f"of {len(endpoints)} endpoints",
            f"class limits not enforced as configured: {', '.join(wrong_class + missing)} "
            "(docs rateLimits.classes)",
            "docs rateLimits.classes", detail,
        )  # fmt: skip
    if open_endpoints or not endpoints:
        return ClaimResult(
            "rate_limits", title, False, float(limited), f"of {len(endpoints)} endpoints",
            f"not limited: {', '.join(open_endpoints[:5]) or 'no endpoint probed'} "
            "(docs rateLimits.endpoints)",
            "docs rateLimits.endpoints", detail,
        )  # fmt: skip
    return ClaimResult(
        "rate_limits", title, True, float(limited), f"of {len(endpoints)} endpoints",
        f"{len(classes)} classes deny just past their limit"
        f"{' (halved: DDoS mode on)' if any(c.get('ddosMode') for c in classes) else ''} "
        "with retryAfterSec; "
        f"all {limited} callables limited",
        "docs rateLimits", detail,
    )  # fmt: skip


def brute_force(rec: Recording) -> ClaimResult:
    """A user's own failure reports block that user at attempt limit + 1 and leave its
    address (and a neighbour behind it) alone; server-observed failures for
    ``BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS`` distinct accounts from one address block it."""
    title = "brute force blocked"
    bf = rec.docs.get("bruteForce")
    if bf is None:
        return not_run("brute_force", title, "brute_force")
    attempts = bf.get("attempts", [])
    blocked_at = next((a["n"] for a in attempts if a.get("blocked")), None)
    blocks = [b for b in bf.get("blocks", []) if b.get("kind") == "brute_force"]
    scoped = {(str(b.get("scope")), str(b.get("subject"))) for b in blocks}
    user_blocked = ("user", str(bf.get("uid"))) in scoped
    own_address = ("ip", str(bf.get("address"))) in scoped
    stuffed = ("ip", str(bf.get("stuffingAddress"))) in scoped
    stuffing = bf.get("stuffing", [])
    stuffing_at = next((a["n"] for a in stuffing if a.get("blocked")), None)
    ref = f"doc pack391_blocks/{blocks[0].get('id')}" if blocks else "docs bruteForce"
    detail = {
        "attempts": attempts,
        "userBlocked": user_blocked,
        "ownAddressBlocked": own_address,
        "neighbourAllowed": bf.get("neighbourAllowed"),
        "stuffing": stuffing,
        "stuffingAddressBlocked": stuffed,
    }
    wanted = t.BRUTE_FORCE_MAX_FAILURES_COUNT + 1
    if blocked_at is None:
        return ClaimResult(
            "brute_force", title, False, None, "attempts",
            f"{len(attempts)} failed attempts and never blocked (docs bruteForce.attempts)",
            "docs bruteForce.attempts", detail,
        )  # fmt: skip
    problems = []
    if blocked_at > wanted or not user_blocked:
        problems.append(f"user blocked at attempt {blocked_at} (want {wanted})")
    if own_address or bf.get("neighbourAllowed") is not True:
        problems.append("a user's own reports blocked its address or its neighbour")
    if not stuffed or stuffing_at != t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS:
        problems.append(
            f"credential stuffing blocked the address at account {stuffing_at} "
            f"(want {t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS})"
        )
    if problems:
        return ClaimResult(
            "brute_force", title, False, float(blocked_at), "attempts",
            "; ".join(problems) + " (docs bruteForce)", ref, detail,
        )  # fmt: skip
    return ClaimResult(
        "brute_force", title, True, float(blocked_at), "attempts",
        f"attempt {blocked_at} refused the user, its address untouched; failures for "
        f"{stuffing_at} accounts blocked the stuffing address",
        ref, detail,
    )  # fmt: skip


def population(rec: Recording) -> ClaimResult:
    """Launch-day traffic (carrier NAT, IPv6 /64s, an app backend, heavy users) under every
    attack of the launch-day population: per attack, legitimate requests denied at most 0.1 % and no
    established user denied because of someone else's traffic, the attack's requests
    admitted from the first full minute after detection at most 1 %, Redis memory
    bounded (``stack.population``'s goals, each PASS, FAIL or n/a)."""
    title = "launch-day population under attack"
    rows = rec.docs.get("population")
    if rows is None:
        return not_run("population", title, "population")
    failed = [
        f"{r['scenario']}: {', '.join(k for k, v in r['goals'].items() if v == 'FAIL')}"
        for r in rows
        if "FAIL" in r["goals"].values()
    ]
    worst = max((float(r.get("legitDeniedPct") or 0.0) for r in rows), default=0.0)
    detail = {"rows": rows}
    if failed or not rows:
        return ClaimResult(
            "population", title, False, rounded(worst), "% legit denied",
            f"goals failed: {'; '.join(failed) or 'no scenario ran'} (docs population)",
            "docs population", detail,
        )  # fmt: skip
    return ClaimResult(
        "population", title, True, rounded(worst), "% legit denied",
        f"{len(rows)} scenarios, every goal met; at most {worst:g} % of legitimate requests "
        "denied",
        "docs population", detail,
    )  # fmt: skip
