"""The rehearsal's reports: pure functions of a recording and its claims."""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree

from stack.rehearse import report
from stack.rehearse.claims import ClaimResult, judge
from stack.rehearse.recording import Act, Recording

T0 = 1_800_000_000.0


def recording() -> Recording:
    series = {
        "load.offered_rps": [(T0 + s, 100.0) for s in range(0, 300, 10)],
        "load.p95_ms": [(T0 + s, 50.0 + s) for s in range(0, 300, 10)],
        "load.errors": [(T0 + 10, 0.0), (T0 + 20, 3.0)],
        "applied.matching-engine": [(T0, 5.0), (T0 + 160, 9.0)],
        "instances.matching-engine": [(T0, 5.0), (T0 + 158, 9.0)],
        "canary.good": [(T0, 0.0), (T0 + 60, 5.0), (T0 + 180, 25.0), (T0 + 240, 100.0)],
        "ddos.mode": [(T0, 0.0), (T0 + 200, 1.0)],
        "alerts.open": [(T0, 0.0), (T0 + 200, 2.0)],
        "sandbox.queue": [(T0, 1.0)],  # no panel names it: drawn under "other"
    }
    acts = [
        Act("push", T0 + 100, T0 + 200, {"service": "matching-engine"}),
        Act("attack_single", T0 + 200, None, {"kind": "single_source_flood"}),
    ]
    return Recording(T0, T0 + 300, series, acts, {})


CLAIMS = [
    ClaimResult("scale_up", "services scale up within 60 s", True, 40.0, "s", "5 -> 9 in 40s",
                "series applied.matching-engine", {}),
    ClaimResult("brute_force", "brute force blocked", False, None, "attempts",
                "never blocked <script>", "docs bruteForce.attempts", {}),
]  # fmt: skip


def test_html_draws_every_series_on_one_axis_and_every_claim() -> None:
    rec = recording()
    page = report.to_html(rec, CLAIMS, {"short": True})
    drawn = set(re.findall(r'data-series="([^"]+)"', page))
    assert drawn == set(rec.series)
    assert re.findall(r'data-claim="([^"]+)"', page) == ["scale_up", "brute_force"]
    assert re.findall(r'data-act="([^"]+)"', page) == ["push", "attack_single"]
    assert "1 of 2 claims pass" in page
    assert "never blocked &lt;script&gt;" in page and "<script>" not in page
    # self-contained: nothing fetched from anywhere
    assert not re.search(r'(src|href)="', page) and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    # every chart is well-formed SVG with the same width: one time axis
    charts = re.findall(r"<svg .*?</svg>", page)
    assert {c.split('data-panel="')[1].split('"')[0] for c in charts} == {
        "load", "latency", "errors", "instances", "canary", "alerts", "other",
    }  # fmt: skip
    for chart in charts:
        root = ElementTree.fromstring(chart)
        assert root.get("width") == str(report.WIDTH)


def test_a_step_path_holds_each_value_until_the_next_sample() -> None:
    path = report._path([(T0, 0.0), (T0 + 50, 10.0)], T0, 100.0, 10.0)
    inner_w = report.WIDTH - report.LEFT - report.RIGHT
    bottom = report.HEIGHT - report.BOTTOM
    assert path == (
        f"M{report.LEFT:.1f},{bottom:.1f} H{report.LEFT + inner_w / 2:.1f} V{report.TOP:.1f}"
    )


def test_panels_place_each_series_once() -> None:
    panels = report.panel_series(recording())
    names = [n for _, _, ns in panels for n in ns]
    assert sorted(names) == sorted(recording().series)
    assert dict((p, ns) for p, _, ns in panels)["instances"] == [
        "applied.matching-engine", "instances.matching-engine",
    ]  # fmt: skip


def test_json_report_round_trips_and_carries_the_verdict() -> None:
    rec = recording()
    doc = json.loads(json.dumps(report.to_json(rec, CLAIMS, {"wallSec": 300})))
    assert doc["passed"] is False
    assert [c["claim"] for c in doc["claims"]] == ["scale_up", "brute_force"]
    back = Recording.from_json(doc["recording"])
    assert back.series == rec.series and [a.name for a in back.acts] == ["push", "attack_single"]
    # the judged claims of the round-tripped recording are the same
    assert [r.to_json() for r in judge(back)] == [r.to_json() for r in judge(rec)]
