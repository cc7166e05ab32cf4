"""The probes track: the market rollout, brute force, the launch-day population, then
the rate limits (after the attacks)."""

from __future__ import annotations

import logging
import time
from typing import Any

from shared import thresholds as t
from stack.platform.tokens import role_token
from stack.rehearse.acts.rate_limits import RateLimitProbe
from stack.rehearse.acts.track import Track
from stack.rehearse.settings import (
    MARKET_COUNTRY,
)

log = logging.getLogger("pack391.rehearse")


class Probes(Track):
    """``market``, ``brute_force``, ``population``, then ``rate_limits``."""

    def probes(self) -> None:
        if self.s.wants("market_rollout"):
            self.market()
        if self.s.wants("brute_force"):
            self.brute_force()
        if self.s.wants("population"):
            self.population()
        if self.s.wants("rate_limits"):
            # after the attacks: spending every bucket is traffic the detector keeps in its
            # baseline, and DDoS mode's blast radius (how much usual traffic halved limits
            # would deny) must be judged on launch-day traffic, not on this probe
            self.attacks_done.wait(timeout=1200)
            RateLimitProbe(self.r).rate_limits()

    def market(self) -> None:
        s = self.stack
        country, limit = MARKET_COUNTRY, self.s.market_limit
        with self.act("market", country=country, trafficLimit=limit):
            baseline = s.must("pack391_getMarketControls", {"country": country}, s.ops)
            known = _market_users(baseline, country)
            s.must("pack391_updateMarketControl", {
                "country": country,
                "config": {"launchStatus": "soft_launch", "trafficLimit": known + limit},
                "reason": f"launch rehearsal {self.run_id}: soft launch",
            })  # fmt: skip
            answers = []
            for i in range(self.s.market_signups):
                uid = f"rh-{self.run_id}-{country}-{i}"
                a = s.call("pack391_checkMarketAccess", {"country": country, "signup": True},
                           s.user(uid, email_verified=True))  # fmt: skip
                answers.append({"uid": uid, "status": a.status,
                                "admitted": bool(a.result.get("signupAdmitted")),
                                "reason": a.result.get("reason")})  # fmt: skip
            s.must("pack391_updateMarketControl", {
                "country": country, "config": {"launchStatus": "public"},
                "reason": f"launch rehearsal {self.run_id}: public",
            })  # fmt: skip
            late = s.call("pack391_checkMarketAccess", {"country": country, "signup": True},
                          s.user(f"rh-{self.run_id}-{country}-public",
                                 email_verified=True))  # fmt: skip
            final = s.must("pack391_getMarketControls", {"country": country}, s.ops)
        self.rec.docs["market"] = {
            "country": country,
            "trafficLimit": limit,
            "signups": len(answers),
            "admitted": sum(1 for a in answers if a["admitted"]),
            "answers": answers,
            "finalStatus": _market_status(final, country),
            "publicAdmits": bool(late.result.get("signupAdmitted")),
        }

    def brute_force(self) -> None:
        s = self.stack
        uid, ip = f"rh-{self.run_id}-bf", self.addr(0, 66)
        token = s.user(uid)
        attempts = []
        stuffing = []
        with self.act("brute_force", uid=uid, address=ip):
            # a user's own reports block the user, never the address behind it
            for n in range(1, t.BRUTE_FORCE_MAX_FAILURES_COUNT + 3):
                a = s.call("pack391_walletBruteForceShield", {"attempt": "failure"}, token, ip)
                blocked = bool(a.result.get("blocked")) or a.status == "RESOURCE_EXHAUSTED"
                attempts.append({"n": n, "status": a.status, "blocked": blocked,
                                 "reason": a.details.get("reason") or a.result.get("reason"),
                                 "attemptsLeft": a.result.get("attemptsLeft")})  # fmt: skip
            neighbour = s.call(
                "pack391_checkRateLimit", {"endpointClass": "wallet"},
                s.user(f"{uid}-neighbour"), ip,
            )  # fmt: skip
            # credential stuffing: failures a backend saw, one per account, from one address
            backend = role_token(self.h.project, "service", f"rh-{self.run_id}-backend")
            victim_ip = self.addr(0, 67)
            for n in range(1, t.BRUTE_FORCE_ADDRESS_MIN_ACCOUNTS + 2):
                a = s.call(
                    "pack391_recordAuthFailure",
                    {"kind": "auth", "ip": victim_ip, "account": f"login-{n}"},
                    backend, self.addr(0, 68),
                )  # fmt: skip
                blocked = bool(a.result.get("blocked"))
                stuffing.append({"n": n, "status": a.status, "blocked": blocked})
            time.sleep(1.5)  # the blocks' Firestore mirrors
        self.rec.docs["bruteForce"] = {
            "uid": uid, "address": ip, "attempts": attempts,
            "neighbourAllowed": neighbour.result.get("allowed"),
            "stuffingAddress": victim_ip, "stuffing": stuffing,
            "blocks": self.recorder.blocks({uid, ip, victim_ip}),
        }  # fmt: skip

    def population(self) -> None:
        """Launch-day traffic under every attack of the population (:mod:`stack.population`), on a
        simulated clock, against a redis-server of its own and a project of its own in the
        stack's Firestore emulator: its blocks, lockdowns and alerts must not touch the
        stack the other acts judge."""
        import tempfile
        from pathlib import Path

        import redis

        from stack.platform import datastores
        from stack.population import ATTACKS, Population, PopulationConfig, rows_json

        project = f"demo-pack391-population-{self.run_id}"
        log_dir = Path(tempfile.mkdtemp(prefix="pack391-rehearse-population-"))
        with self.act("population", project=project):
            child, url = datastores.start_redis(log_dir)
            client = redis.Redis.from_url(url, decode_responses=True)
            db = datastores.firestore_client(self.h.firestore_host, project)
            try:

                def reset() -> None:
                    client.flushall()
                    datastores.wipe_firestore(self.h.firestore_host, project)

                rows = Population(client, db, PopulationConfig.small(), reset).run_all(
                    list(ATTACKS)
                )
            finally:
                client.close()
                datastores.forget_wipe_connection(self.h.firestore_host)
                child.stop()
        self.rec.docs["population"] = rows_json(rows)


def _market_entry(controls: dict[str, Any], country: str) -> dict[str, Any]:
    for m in controls.get("markets", []) or []:
        if isinstance(m, dict) and m.get("country") == country:
            return m
    return controls if controls.get("country") == country else {}


def _market_users(controls: dict[str, Any], country: str) -> int:
    return int(_market_entry(controls, country).get("currentUsers") or 0)


def _market_status(controls: dict[str, Any], country: str) -> str | None:
    entry = _market_entry(controls, country)
    config = entry.get("config") if isinstance(entry.get("config"), dict) else entry
    status = config.get("launchStatus") if isinstance(config, dict) else None
    return None if status is None else str(status)
