"""``pack391 loadtest``: worker processes, JSON summary, HTML report, exit code gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.serial  # a quiet core: thresholds judged on real latencies


def loadtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "loadtest", *args, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_passing_run_writes_json_and_an_html_report(fast_url: str, tmp_path: Path) -> None:
    report, summary = tmp_path / "r.html", tmp_path / "r.json"
    done = loadtest(
        "live_calls", "--target", fast_url, "--rps", "40", "--duration", "2",
        "--workers", "2", "--report", str(report), "--json", str(summary),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    brief = json.loads(done.stdout)
    assert brief["verdict"] == "pass" and brief["requests"] == 80 and brief["dropped"] == 0
    assert set(brief["latencyMs"]) == {"avg", "p50", "p95", "p99", "max"}
    full = json.loads(summary.read_text())
    assert full["brief"] == brief and len(full["timeline"]) == 2
    page = report.read_text()
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="heatmap"' in page
    assert page.count("<rect") == 2 * (len(full["heatmap"]["bucketsMs"]) + 1)
    assert 'id="percentiles"' in page and 'id="throughput"' in page
