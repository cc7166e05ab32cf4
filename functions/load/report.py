"""The self-contained HTML report of a run: summary, verdicts, the latency heatmap and
the percentile and throughput timelines as inline SVG, the crash map, the failover log."""

from __future__ import annotations

import html
import json
import math
from typing import Any

CELL_H = 18
PLOT_W = 900
PLOT_H = 220


def _heat_color(count: int, top: int) -> str:
    if count <= 0:
        return "#f4f4f4"
    x = math.log1p(count) / math.log1p(max(top, 1))
    red, green, blue = 255, int(235 - 200 * x), int(200 - 190 * x)
    return f"rgb({red},{max(green, 0)},{max(blue, 0)})"


def heatmap_svg(heat: dict[str, Any]) -> str:
    secs: list[int] = heat["secs"]
    bounds: list[float] = heat["bucketsMs"]
    counts: list[list[int]] = heat["counts"]
    labels = [f"≤{b:g} ms" for b in bounds] + [f">{bounds[-1]:g} ms"]
    rows = len(labels)
    cell_w = max(2.0, PLOT_W / max(len(secs), 1))
    top = max((c for row in counts for c in row), default=0)
    left = 80
    width = left + cell_w * len(secs) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="heatmap" width="{width:.0f}" '
        f'height="{rows * CELL_H + 30}">'
    ]
    for j, label in enumerate(labels):
        y = (rows - 1 - j) * CELL_H
        parts.append(f'<text x="0" y="{y + 13}" font-size="11">{html.escape(label)}</text>')
    for i, sec in enumerate(secs):
        x = left + i * cell_w
        for j, count in enumerate(counts[i]):
            y = (rows - 1 - j) * CELL_H
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{cell_w:.1f}" height="{CELL_H}" '
                f'fill="{_heat_color(count, top)}"><title>second {sec}, {labels[j]}: '
                f"{count}</title></rect>"
            )
    parts.append(
        f'<text x="{left}" y="{rows * CELL_H + 20}" font-size="11">seconds since start '
        f"(0 to {secs[-1] if secs else 0})</text></svg>"
    )
    return "".join(parts)


def lines_svg(series: dict[str, list[float]], unit: str, svg_id: str) -> str:
    colors = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd"]
    n = max((len(v) for v in series.values()), default=0)
    top = max((x for v in series.values() for x in v), default=0.0) or 1.0
    left = 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{svg_id}" width="{PLOT_W + left + 10}" '
        f'height="{PLOT_H + 40}">',
        f'<text x="0" y="12" font-size="11">{top:.1f} {unit}</text>',
        f'<text x="0" y="{PLOT_H}" font-size="11">0</text>',
        f'<line x1="{left}" y1="{PLOT_H}" x2="{left + PLOT_W}" y2="{PLOT_H}" stroke="#999"/>',
    ]
    for k, (name, values) in enumerate(series.items()):
        step = PLOT_W / max(n - 1, 1)
        points = " ".join(
            f"{left + i * step:.1f},{PLOT_H - (v / top) * (PLOT_H - 10):.1f}"
            for i, v in enumerate(values)
        )
        color = colors[k % len(colors)]
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
        )
        parts.append(
            f'<text x="{left + 10 + 110 * k}" y="{PLOT_H + 30}" font-size="12" '
            f'fill="{color}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(
    run_id: str,
    plan: dict[str, Any],
    summary: dict[str, Any],
    timeline: list[dict[str, Any]],
    heat: dict[str, Any],
    crash: list[dict[str, Any]],
    failover: list[dict[str, Any]],
) -> str:
    lat = summary["latencyMs"]
    verdict = summary["verdict"]
    percentiles = {
        "p50 ms": [r["p50Ms"] for r in timeline],
        "p95 ms": [r["p95Ms"] for r in timeline],
        "p99 ms": [r["p99Ms"] for r in timeline],
    }
    throughput = {
        "scheduled/s": [float(r["scheduled"]) for r in timeline],
        "sent/s": [float(r["sent"]) for r in timeline],
        "errors/s": [float(r["errors"]) for r in timeline],
        "shed/s": [float(r.get("shed", 0)) for r in timeline],
        "dropped/s": [float(r["dropped"]) for r in timeline],
    }
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Load test {html.escape(run_id)}: {html.escape(plan["scenarioId"])} ({verdict})</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; }}
.pass {{ color: #176f2c; }} .fail {{ color: #b00020; }}
</style></head><body>
<h1>{html.escape(plan["scenarioId"])}: <span class="{verdict}">{verdict.upper()}</span></h1>
<p>Run {html.escape(run_id)} against {html.escape(plan["target"])}: {plan["type"]} test,
{plan["shape"]} shape, peak {plan["rps"]:g} RPS for {plan["durationSec"]} s in
{plan["shards"]} shard(s).</p>
<p>Achieved {summary["achievedRps"]} RPS ({summary["requests"]} requests sent of
{summary["scheduled"]} scheduled; {summary["dropped"]} dropped, {summary["late"]} late);
latency avg {lat["avg"]} ms, p50 {lat["p50"]}, p95 {lat["p95"]}, p99 {lat["p99"]},
max {lat["max"]} ms (measured from each request's scheduled start); {summary["errors"]} errors
({summary["errorRatePct"]}% of the requests served)
{html.escape(json.dumps(summary["errorsByKind"]))}; {summary.get("shed", 0)} shed by the
target ({summary.get("shedRatePct", 0.0)}%: 503 with Retry-After, over capacity; not
errors, not in the latency figures).</p>
<h2>Thresholds</h2>
{_table(summary["thresholds"], ["name", "limit", "actual", "passed"])}
<h2>Latency heatmap</h2>
{heatmap_svg(heat)}
<h2>Percentiles per second</h2>
{lines_svg(percentiles, "ms", "percentiles")}
<h2>Throughput per second</h2>
{lines_svg(throughput, "req/s", "throughput")}
<h2>Endpoints</h2>
{
        _table(
            [{"endpoint": k, **v} for k, v in summary["endpoints"].items()],
            ["endpoint", "count", "avg", "p50", "p95", "p99", "max"],
        )
    }
<h2>Crash map</h2>
{_table(crash, ["sec", "endpoint", "kind", "count"])}
<h2>Failover log</h2>
{_table(failover, ["at", "kind", "source", "id", "detail"])}
</body></html>
"""
