"""The rehearsal's reports, pure functions of the recording and the judged claims:
a JSON document and one self-contained HTML page (inline SVG, no external asset).

The page stacks one chart per panel (load, latency, load errors, instances, canary
traffic, alerts and protection) on ONE time axis (seconds since the rehearsal began),
with the script's acts drawn as labelled bands across all of them; then the claims
table: pass/fail, the figure, why, and where the evidence is.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stack.rehearse.claims import ClaimResult
from stack.rehearse.recording import Point, Recording

PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("load", "requests per second", ("load.offered_rps", "load.achieved_rps", "attack.rps")),
    ("latency", "p95 latency, ms", ("load.p95_ms",)),
    ("errors", "load errors per second", ("load.errors", "load.shed", "load.dropped")),
    ("instances", "instances", ("applied.", "instances.")),
    ("canary", "canary traffic, %", ("canary.",)),
    (
        "alerts",
        "alerts, DDoS mode, isolation, deploy freeze",
        ("alerts.open", "ddos.mode", "isolated.", "slo."),
    ),
)
"""(id, y-axis label, series names or name prefixes ending in a dot)."""

COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 1100, 170, 60, 190, 10, 24


def to_json(rec: Recording, claims: Sequence[ClaimResult], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: verdict, claims, meta (wall time, settings) and the recording."""
    return {
        "passed": all(c.passed for c in claims),
        "claims": [c.to_json() for c in claims],
        "meta": meta,
        "recording": rec.to_json(),
    }


def _matches(name: str, wanted: tuple[str, ...]) -> bool:
    return any(name == w or (w.endswith(".") and name.startswith(w)) for w in wanted)


def panel_series(rec: Recording) -> list[tuple[str, str, list[str]]]:
    """Each panel with the recorded series it draws; series no panel names go to an
    ``other`` panel, so every series is drawn."""
    placed: set[str] = set()
    panels = []
    for pid, label, wanted in PANELS:
        names = sorted(n for n in rec.series if n not in placed and _matches(n, wanted))
        placed.update(names)
        if names:
            panels.append((pid, label, names))
    rest = sorted(n for n in rec.series if n not in placed)
    if rest:
        panels.append(("other", "other", rest))
    return panels


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def chart_height(series_count: int) -> int:
    """A chart is tall enough for its legend (one line per series)."""
    return max(HEIGHT, TOP + 16 + 13 * series_count + BOTTOM)


def _path(
    points: Sequence[Point], x0: float, span: float, ymax: float, height: int = HEIGHT
) -> str:
    """A step line: each value holds until the next sample."""
    inner_w, inner_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    cmds = []
    for i, (t, v) in enumerate(points):
        x = LEFT + (t - x0) / span * inner_w
        y = TOP + inner_h - (v / ymax) * inner_h
        cmds.append(f"M{x:.1f},{y:.1f}" if i == 0 else f"H{x:.1f} V{y:.1f}")
    return " ".join(cmds)


def _chart(rec: Recording, pid: str, label: str, names: list[str]) -> str:
    x0 = rec.started_at
    span = max(1.0, rec.ended_at - rec.started_at)
    height = chart_height(len(names))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    ymax = max((v for n in names for _, v in rec.series[n]), default=0.0)
    ymax = ymax * 1.1 if ymax > 0 else 1.0
    parts = [
        f'<svg class="chart" data-panel="{pid}" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="{html.escape(label)}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    for act in rec.acts:
        a = LEFT + (act.started_at - x0) / span * inner_w
        b = LEFT + ((act.ended_at or rec.ended_at) - x0) / span * inner_w
        parts.append(
            f'<rect class="act" x="{a:.1f}" y="{TOP}" width="{max(1.0, b - a):.1f}" '
            f'height="{inner_h}" fill="#000" fill-opacity="0.04">'
            f"<title>{html.escape(act.name)}</title></rect>"
        )
    for frac in (0.0, 0.5, 1.0):
        y = TOP + inner_h - frac * inner_h
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_fmt(ymax * frac)}</text>"
        )
    ticks = max(1, int(span // 60))
    step = 60 * max(1, ticks // 20 + 1)
    for s in range(0, int(span) + 1, step):
        x = LEFT + s / span * inner_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP + inner_h}" x2="{x:.1f}" '
            f'y2="{TOP + inner_h + 4}" stroke="#999"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" '
            f'font-size="10">{s // 60}m</text>'
        )
    parts.append(
        f'<text x="8" y="{TOP + inner_h / 2:.0f}" font-size="11" '
        f'transform="rotate(-90 8,{TOP + inner_h / 2:.0f})" '
        f'text-anchor="middle">{html.escape(label)}</text>'
    )
    for i, name in enumerate(names):
        colour = COLOURS[i % len(COLOURS)]
        pts = rec.series[name]
        parts.append(
            f'<path data-series="{html.escape(name)}" '
            f'd="{_path(pts, x0, span, ymax, height)}" fill="none" '
            f'stroke="{colour}" stroke-width="1.5"><title>{html.escape(name)}</title></path>'
        )
        ly = TOP + 12 + i * 13
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 8}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{WIDTH - RIGHT + 22}" y="{ly - 3}" font-size="10">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _acts_table(rec: Recording) -> str:
    rows = []
    for act in rec.acts:
        end = "" if act.ended_at is None else f"+{act.ended_at - rec.started_at:.0f}s"
        detail = html.escape(json.dumps(act.detail, default=str)[:300])
        rows.append(
            f'<tr data-act="{html.escape(act.name)}"><td>{html.escape(act.name)}</td>'
            f"<td>+{act.started_at - rec.started_at:.0f}s</td><td>{end}</td>"
            f"<td><code>{detail}</code></td></tr>"
        )
    return (
        "<table><tr><th>act</th><th>from</th><th>to</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _claims_table(claims: Sequence[ClaimResult]) -> str:
    rows = []
    for c in claims:
        verdict = "pass" if c.passed else "FAIL"
        figure = "" if c.figure is None else f"{_fmt(c.figure)} {html.escape(c.unit)}"
        rows.append(
            f'<tr data-claim="{c.claim}" class="{verdict.lower()}"><td>{html.escape(c.title)}</td>'
            f"<td>{verdict}</td><td>{figure}</td><td>{html.escape(c.why)}</td>"
            f"<td><code>{html.escape(c.evidence)}</code></td></tr>"
        )
    return (
        "<table><tr><th>claim</th><th>verdict</th><th>figure</th><th>why</th><th>evidence</th></tr>"
        + "".join(rows)
        + "</table>"
    )


STYLE = (
    "body{font-family:sans-serif;margin:16px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left;vertical-align:top}"
    "tr.pass td:nth-child(2){color:#1a7f37;font-weight:bold}"
    "tr.fail td:nth-child(2){color:#c62828;font-weight:bold}.chart{display:block;margin:2px 0}"
)


def to_html(rec: Recording, claims: Sequence[ClaimResult], meta: dict[str, Any]) -> str:
    """One page, no external asset: header, the claims, the charts, the acts."""
    passed = sum(1 for c in claims if c.passed)
    began = datetime.fromtimestamp(rec.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    wall = rec.ended_at - rec.started_at
    charts = "".join(_chart(rec, pid, label, names) for pid, label, names in panel_series(rec))
    settings = html.escape(json.dumps(meta, default=str, indent=1))
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>pack391 launch rehearsal</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Launch rehearsal: {passed} of {len(claims)} claims pass</h1>"
        f"<p>Began {began}; wall time {wall / 60:.1f} min. Time axis: minutes since the start.</p>"
        f"<h2>Claims</h2>{_claims_table(claims)}"
        f"<h2>Timeline</h2>{charts}"
        f"<h2>Acts</h2>{_acts_table(rec)}"
        f"<h2>Settings</h2><pre>{settings}</pre>"
        "</body></html>"
    )
