"""cloudflare mode behind real HTTP: our zone (stack/platform/frontdoor.py's
cloudflare mode with ``origin_secret``, standing in for the Transform Rule), anyone else's
Cloudflare (the same stand-in without it: a Worker sends from the same ranges) and a
client going straight past both, in front of Google's front end's stand-in and the real
local functions server. Cloudflare's egress ranges are a loopback address here
(``PACK391_CLOUDFLARE_RANGES``); tests/shared/ratelimit/test_cloudflare_origin.py has the
published ranges as literal tables."""

from __future__ import annotations

import pytest

from shared.ratelimit.middleware import default_limiter
from stack.platform.frontdoor import DEFAULT_ORIGIN_HEADER, FrontDoorProxy
from tests.conftest import Caller
from tests.stack.test_frontdoor import CLOUDFLARE_EGRESS, STATS, A, B, check, set_br_throttle

SECRET = "0d3c8f6e2a1b4c5d9e7f8a6b5c4d3e2f"


def test_cloudflare_is_believed_only_through_your_own_zone(
    caller: Caller, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_br_throttle(caller)  # auth: 2/min in BR, 5 elsewhere
    monkeypatch.setenv("PACK391_FRONT_DOOR", "cloudflare")
    monkeypatch.setenv("PACK391_CLOUDFLARE_RANGES", f"{CLOUDFLARE_EGRESS}/32")
    monkeypatch.setenv("PACK391_CLOUDFLARE_ORIGIN_SECRET", SECRET)
    guess = [(DEFAULT_ORIGIN_HEADER, "a guess")]
    with (
        FrontDoorProxy("google", live_server) as google,
        FrontDoorProxy(
            "cloudflare",
            google.url,
            countries={A: "BR", B: "BR"},
            source_address=CLOUDFLARE_EGRESS,
            origin_secret=SECRET,
        ) as ours,
        FrontDoorProxy(
            "cloudflare",
            google.url,
            countries={A: "BR", B: "BR"},
            source_address=CLOUDFLARE_EGRESS,  # the same ranges: anyone's Worker sends from them
        ) as theirs,
    ):
        # through our zone: the secret's header is ours, whatever the client wrote
        through = check(caller, ours.url, "auth", uid="via-zone", source=A, headers=guess)
        assert through["limit"] == 2  # Cloudflare's country for A is believed

        # through someone else's Cloudflare: the right ranges, no secret, not believed
        worker = [
            check(caller, theirs.url, "auth", uid=f"via-worker-{i}", source=src, headers=guess)
            for i, src in enumerate((A, B, A))
        ]
        assert [w["limit"] for w in worker] == [5, 5, 5]  # no country

        # straight past Cloudflare with its headers and even the right secret (leaked):
        # the right-most entry is not Cloudflare's, so nothing it says is believed
        forged = [
            ("CF-Connecting-IP", A),
            ("CF-IPCountry", "BR"),
            ("cf-bot-score", "99"),
            (DEFAULT_ORIGIN_HEADER, SECRET),
        ]
        around = check(caller, google.url, "auth", uid="around", source=B, headers=forged)
        assert around["limit"] == 5

    default_limiter().flush_counters()
    stats = caller.call(STATS, {}, role="ops").result
    offenders = {o["ip"]: o["requests"] for o in stats["topOffenders"]}
    # A through our zone: A; the Worker's three requests: under its egress address, not
    # under A or B; B straight past Cloudflare: B, not the A it named
    assert (offenders.get(A), offenders.get(CLOUDFLARE_EGRESS), offenders.get(B)) == (1, 3, 1)
