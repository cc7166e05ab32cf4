"""``pack391 deploy hosting-config``: the Hosting target and the rewrites'
region come from the deploy's configuration, not from what is committed for the demo
project. Run on copies of the committed firebase.json and .firebaserc."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stack import cli
from tests.conftest import ROOT

PROJECT = "avalo-prod"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("firebase.json", ".firebaserc"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / f".env.{PROJECT}").write_text("PACK391_REGION=europe-west1\nOTHER=x\n")
    return tmp_path


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def run(*argv: str) -> int:
    return cli.main(["deploy", "hosting-config", *argv])


def test_the_target_and_the_region_are_written_from_the_configuration(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before_json, before_rc = read(checkout / "firebase.json"), read(checkout / ".firebaserc")
    rewrites = before_json["hosting"]["rewrites"]
    assert before_json["hosting"]["target"] == "ops"
    assert rewrites and all("function" in r for r in rewrites)  # every rewrite is covered
    assert PROJECT not in before_rc["targets"]  # what the issue saw: only the demo project
    assert run("--project", PROJECT, "--dir", str(checkout), "--check") == 1
    assert "not configured for avalo-prod" in capsys.readouterr().err
    assert run("--project", PROJECT, "--site", "avalo-ops", "--dir", str(checkout)) == 0
    assert "ops -> avalo-ops; rewrites -> europe-west1" in capsys.readouterr().out
    after_json, after_rc = read(checkout / "firebase.json"), read(checkout / ".firebaserc")
    assert [r["function"]["region"] for r in after_json["hosting"]["rewrites"]] == [
        "europe-west1"
    ] * len(rewrites)
    assert after_rc["targets"][PROJECT] == {"hosting": {"ops": ["avalo-ops"]}}
    assert after_rc["targets"]["demo-avalo"] == before_rc["targets"]["demo-avalo"]
    # nothing else moves
    expected = copy.deepcopy(before_json)
    for rewrite in expected["hosting"]["rewrites"]:
        rewrite["function"]["region"] = "europe-west1"
    assert after_json == expected
    assert run("--project", PROJECT, "--site", "avalo-ops", "--dir", str(checkout), "--check") == 0


def test_the_site_defaults_to_the_project_and_a_stale_region_is_refused(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--project", PROJECT, "--dir", str(checkout)) == 0
    assert read(checkout / ".firebaserc")["targets"][PROJECT]["hosting"]["ops"] == [PROJECT]
    # the functions move region (deploy env rewrote the file): the rewrites are stale
    (checkout / f".env.{PROJECT}").write_text("PACK391_REGION=asia-northeast1\n")
    capsys.readouterr()
    assert run("--project", PROJECT, "--dir", str(checkout), "--check") == 1
    assert "region asia-northeast1" in capsys.readouterr().err


def test_without_the_env_file_nothing_is_written(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout / f".env.{PROJECT}").unlink()
    before = (checkout / "firebase.json").read_text()
    assert run("--project", PROJECT, "--dir", str(checkout)) == 1
    assert "run `pack391 deploy env` first" in capsys.readouterr().err
    assert (checkout / "firebase.json").read_text() == before
    (checkout / f".env.{PROJECT}").write_text("OTHER=x\n")
    assert run("--project", PROJECT, "--dir", str(checkout)) == 1
    assert "has no PACK391_REGION" in capsys.readouterr().err
