"""``pack391 drill`` against the test emulator, in process: the drill's RTO and the data
gates on the restored copy, and its exit code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stack.cli import main
from tests.backup.test_drill_data_gates import FAILING, PASSING, seed_business
from tests.conftest import PROJECT


def test_drill_shows_the_rto_and_the_gates_and_fails_on_bad_data(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_business(datetime.now(UTC), FAILING)
    assert main(["backup"]) == 0
    backup_id = json.loads(capsys.readouterr().out)["backupId"]

    assert main(["drill", "--region", "europe-west1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(
        f"data_gates_failed (source {backup_id}, target projects/{PROJECT}/databases/drill-fn)"
    )
    assert "(RTO 900 s: within), cleaned up: yes" in out[1]
    assert out[2].startswith("data gates on drill-fn, data as of ")
    rows = {line.split()[0]: line.split() for line in out[3:]}
    assert rows["payout_anomalies"][1:5] == ["FAIL", "20%", "/", "5%"]
    assert rows["token_mismatches"][1:5] == ["FAIL", "10%", "/", "2%"]
    assert rows["auth_system"][1:5] == ["PASS", "0%", "/", "3%"]
    assert rows["database_indexes"][1] == "SKIPPED"  # the emulator needs none
    assert "4 of 20 events" in " ".join(rows["payout_anomalies"])


def test_drill_passes_on_good_data_and_prints_json(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_business(datetime.now(UTC), PASSING)
    assert main(["backup"]) == 0
    capsys.readouterr()
    assert main(["drill", "--json"]) == 0
    drill = json.loads(capsys.readouterr().out)
    assert drill["verdict"] == "passed" and drill["ok"] is True
    assert [g["name"] for g in drill["gates"]] == [
        "payout_anomalies",
        "token_mismatches",
        "auth_system",
        "database_indexes",
    ]
    assert drill["requestedBy"].startswith("cli:")
