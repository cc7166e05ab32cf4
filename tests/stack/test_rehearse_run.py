"""The launch rehearsal end to end, the short version, so its machinery cannot rot: three
claims (scale_up, rate_limits, brute_force) against one ``pack391 serve`` of its own, with
the real scheduler, scaling guard and rate limiter (about 95 s: the push ends soon after
the scale-up). It runs in the parallel phase, first (tests/lanes.py): its push begins in
seconds 16-22 of a minute, so the guard's run at that minute's end leaves the 60 s claim
a margin of 16 s and more on the loaded box. Every claim it judges is enforced.

``make rehearse`` runs every claim (about 16 minutes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.platform.harness import serve_stack
from stack.rehearse.claims import ClaimResult
from stack.rehearse.cli import rehearse, settings_for, table
from stack.rehearse.load import LoadPool

CLAIMS = ["scale_up", "rate_limits", "brute_force"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    out = tmp_path_factory.mktemp("rehearse")
    pool = LoadPool()  # forked before the stack's threads and channels
    try:
        with serve_stack(out / "logs", out / "stack.json") as handle:
            doc = rehearse(handle, settings_for(CLAIMS, short=True), pool, out)
    finally:
        pool.close()
    print(table([ClaimResult(**c) for c in doc["claims"]]))
    yield doc, out


@pytest.mark.timeout(420)
def test_the_short_rehearsal_writes_both_reports_with_its_claims(
    run: tuple[dict[str, Any], Path],
) -> None:
    doc, out = run
    assert [c["claim"] for c in doc["claims"]] == CLAIMS
    saved = json.loads((out / "rehearsal.json").read_text())
    assert saved["claims"] == doc["claims"] and saved["passed"] == doc["passed"]
    page = (out / "rehearsal.html").read_text()
    assert re.findall(r'data-claim="([^"]+)"', page) == CLAIMS
    drawn = set(re.findall(r'data-series="([^"]+)"', page))
    assert {"load.offered_rps", "load.p95_ms", "applied.media-processing"} <= drawn
    assert not doc["meta"]["trackErrors"], doc["meta"]["trackErrors"]
    assert doc["meta"]["wallSec"] < 240


@pytest.mark.timeout(60)
def test_the_guard_scaled_the_pushed_service_through_its_resize_hook(
    run: tuple[dict[str, Any], Path],
) -> None:
    doc, _ = run
    scale_up = doc["claims"][0]
    # the claim is judged, and enforced: within 60 s of the breach, a larger count applied
    assert scale_up["passed"], scale_up["why"]
    assert scale_up["figure"] is not None and scale_up["figure"] <= 60
    assert scale_up["detail"]["to"] > scale_up["detail"]["from"]
    decisions = doc["recording"]["docs"]["scalingDecisions"]
    assert any(
        d["serviceId"] == "media-processing" and d["action"] == "scale_up" and d["acted"]
        for d in decisions
    ), decisions


@pytest.mark.timeout(60)
def test_rate_limits_and_the_brute_force_shield_hold(run: tuple[dict[str, Any], Path]) -> None:
    doc, _ = run
    by_claim = {c["claim"]: c for c in doc["claims"]}
    assert by_claim["rate_limits"]["passed"], by_claim["rate_limits"]["why"]
    assert by_claim["brute_force"]["passed"], by_claim["brute_force"]["why"]
    assert by_claim["rate_limits"]["figure"] >= 30  # every callable the server lists
