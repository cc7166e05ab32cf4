"""The rate-limit probe: each class spent at limit + 1, then every callable the server
lists, called while its caller's buckets are spent."""

from __future__ import annotations

import functools
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from shared import thresholds as t
from stack.platform.tokens import role_token
from stack.rehearse.acts.track import Track
from stack.rehearse.calls import Answer
from stack.rehearse.timeline import DDOS_MODE_KEY

log = logging.getLogger("pack391.rehearse")


class RateLimitProbe(Track):
    """The ``rate_limits`` act."""

    def rate_limits(self) -> None:
        """Each class spent for a fresh user and address: the first denial must come at
        limit + 1 (plus what GCRA refilled while the probe ran); then every callable."""
        s = self.stack
        classes = []
        with self.act("rate_limits"):
            users = (k for k in t.RATE_LIMIT_PER_MIN if k not in ("staff", "service"))
            for i, cls in enumerate(users):
                uid, ip = f"rh-{self.run_id}-rl-{cls}", self.addr(1, 10 + i)
                token = s.user(uid)
                probe = functools.partial(
                    s.call, "pack391_checkRateLimit", {"endpointClass": cls}, token, ip
                )
                classes.append(self._probe_class(cls, probe))
            # a trusted service's own calls: per principal, never by its egress address
            backend = role_token(self.h.project, "service", f"rh-{self.run_id}-svc")
            classes.append(self._probe_class("service", functools.partial(
                s.call, "pack391_checkRateLimit", {"endpointClass": "general"}, backend,
                self.addr(2, 9),
            )))  # fmt: skip
            # staff: ops and admin callers of ops and admin functions, per user, any address
            staff = role_token(self.h.project, "admin", f"rh-{self.run_id}-staff")
            addresses = [self.addr(2, k) for k in range(1, 6)]
            n = iter(range(10**9))
            classes.append(self._probe_class(
                "staff", lambda: s.call("pack391_getLiveMetrics", {}, staff,
                                        addresses[next(n) % len(addresses)]),
            ))  # fmt: skip
            endpoints = self._every_endpoint_limited()
        self.rec.docs["rateLimits"] = {"classes": classes, "endpoints": endpoints}

    def _probe_class(self, cls: str, call: Callable[[], Answer]) -> dict[str, Any]:
        limit = t.RATE_LIMIT_PER_MIN[cls]
        # DDoS mode (left on by an attack) halves every class but staff: recorded with the
        # probe so the claim expects the limit that applied
        mode = self.recorder.redis.exists(DDOS_MODE_KEY) > 0
        began = time.monotonic()
        probe: dict[str, Any] = {"class": cls, "limit": limit, "ddosMode": mode,
                                 "deniedAt": None, "retryAfterSec": None}  # fmt: skip
        for n in range(1, 3 * limit + 2):
            a = call()
            if a.status == "RESOURCE_EXHAUSTED" or a.result.get("allowed") is False:
                retry = a.result.get("retryAfterSec", a.details.get("retryAfterSec"))
                probe |= {"deniedAt": n, "retryAfterSec": retry}
                break
        return probe | {"elapsedSec": round(time.monotonic() - began, 3)}

    def _every_endpoint_limited(self, rounds: int = 3) -> list[dict[str, Any]]:
        """Every callable the server lists, called while its caller's buckets are kept
        spent: a user whose every class is spent, and, for the ops and admin functions
        (``PERMISSION_DENIED`` to a user), a staff caller whose staff bucket is spent.

        Two "saturator" threads keep spending the caller's buckets (per user: from
        addresses of their own, none near the single-source threshold) while the targets
        are called one at a time, so a token GCRA refills goes to the saturators, not to a
        target (a refilled token is rarely won by a target; one that is, is tried again)."""
        s = self.stack
        _, listing = _get_json(self.h.functions_url.rstrip("/") + "/__/functions")
        names = sorted(
            n for n, info in (listing or {}).get("functions", {}).items()
            if info.get("trigger") == "callable"
        )  # fmt: skip
        user, user_ip = s.user(f"rh-{self.run_id}-rl-all"), self.addr(3, 1)
        staff = role_token(self.h.project, "admin", f"rh-{self.run_id}-rl-staff")
        backend = role_token(self.h.project, "service", f"rh-{self.run_id}-rl-svc")
        burst_ips = [self.addr(3, k) for k in range(20, 44)]
        user_classes = [c for c in t.RATE_LIMIT_PER_MIN if c not in ("staff", "service")]
        rows: dict[str, dict[str, Any]] = {}

        def spend_user(i: int) -> tuple[str, Answer]:
            cls = user_classes[i % len(user_classes)]
            ip = burst_ips[i % len(burst_ips)]
            return cls, s.call("pack391_checkRateLimit", {"endpointClass": cls}, user, ip)

        def spend_staff(i: int) -> tuple[str, Answer]:
            ip = burst_ips[i % len(burst_ips)]
            return "staff", s.call("pack391_getLiveMetrics", {}, staff, ip)

        def spend_service(i: int) -> tuple[str, Answer]:
            ip = burst_ips[i % len(burst_ips)]
            answer = s.call("pack391_checkRateLimit", {"endpointClass": "general"}, backend, ip)
            return "service", answer

        def sweep(
            targets: list[str], spend: Callable[[int], tuple[str, Answer]], token: str,
            who: str, classes: int,
        ) -> None:  # fmt: skip
            stop = threading.Event()
            spent = threading.Event()
            denied: set[str] = set()
            counter = iter(range(10**9))
            lock = threading.Lock()

            def saturate() -> None:
                while not stop.is_set():
                    with lock:
                        i = next(counter)
                    cls, a = spend(i)
                    if a.status == "RESOURCE_EXHAUSTED" or a.result.get("allowed") is False:
                        with lock:
                            denied.add(cls)
                            if len(denied) >= classes:  # every class of the caller spent
                                spent.set()

            threads = [threading.Thread(target=saturate, daemon=True) for _ in range(2)]
            for th in threads:
                th.start()
            try:
                spent.wait(120)
                for name in targets:
                    a = s.call(name, _probe_data(name), token, user_ip)
                    limited = a.status == "RESOURCE_EXHAUSTED" or a.result.get("allowed") is False
                    rows[name] = {
                        "name": name, "as": who,
                        "status": "RESOURCE_EXHAUSTED" if limited else a.status,
                        "answer": a.status if a.status != "OK"
                        else f"allowed={a.result.get('allowed')}",
                        "reason": a.details.get("reason") or a.result.get("reason"),
                    }  # fmt: skip
            finally:
                stop.set()
                for th in threads:
                    th.join(30)

        todo = list(names)
        as_staff: set[str] = set()
        as_service: set[str] = set()
        for _ in range(rounds):
            users = [n for n in todo if n not in as_staff and n not in as_service]
            if users:
                sweep(users, spend_user, user, "user", len(user_classes))
                as_staff |= {n for n in users if rows[n]["answer"] == "PERMISSION_DENIED"}
            staffs = [n for n in todo if n in as_staff and n not in as_service]
            if staffs:
                sweep(staffs, spend_staff, staff, "staff", 1)
                as_service |= {n for n in staffs if rows[n]["answer"] == "PERMISSION_DENIED"}
            services = [n for n in todo if n in as_service]
            if services:
                sweep(services, spend_service, backend, "service", 1)
            todo = [n for n in names if rows.get(n, {}).get("status") != "RESOURCE_EXHAUSTED"]
            if not todo:
                break
        return [rows.get(n, {"name": n, "status": None}) for n in names]


def _probe_data(name: str) -> dict[str, Any]:
    """What an endpoint is called with by the sweep: nothing, except the rate-limit check
    itself, whose class is its argument (it answers INVALID_ARGUMENT before counting)."""
    return {"endpointClass": "general"} if name == "pack391_checkRateLimit" else {}


def _get_json(url: str) -> tuple[int | None, Any]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        conn.request("GET", u.path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None, None
    finally:
        conn.close()
