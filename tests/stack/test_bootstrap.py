"""``pack391 bootstrap``: the plan is a pure function of its inputs (literal expectations),
bad input names its field, and the runner runs real processes (a stand-in ``gcloud`` on
PATH that records its arguments) one phase at a time, stopping at the first failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from stack import cli
from stack.release.bootstrap_plan import (
    TASK_FUNCTIONS,
    BootstrapError,
    Inputs,
    Phase,
    attribute_condition,
    plan,
    secret_params,
)

RT = "pack391-runtime@acme-prod.iam.gserviceaccount.com"
MEMBER = f"serviceAccount:{RT}"


def commands(inputs: Inputs, phase: Phase | None = None) -> list[str]:
    return [" ".join(s.argv) for s in plan(inputs) if phase is None or s.phase == phase]


def test_a_minimal_plan_literally() -> None:
    got = commands(Inputs("acme-prod", secrets=("PACK391_BACKUP_KEY",)))
    assert got[0].startswith("gcloud services enable cloudfunctions.googleapis.com ")
    assert got[0].endswith(" --project acme-prod")
    assert got[1:] == [
        "gcloud iam service-accounts create pack391-runtime --project acme-prod "
        "--display-name pack391 functions runtime",
        *(
            f"gcloud projects add-iam-policy-binding acme-prod --member {MEMBER} --role {role} "
            "--condition None"
            for role in (
                "roles/datastore.user",
                "roles/run.developer",
                "roles/monitoring.viewer",
                "roles/cloudtasks.enqueuer",
                "roles/datastore.importExportAdmin",
                "roles/datastore.cloneAdmin",
            )
        ),
        "gcloud iam roles create pack391DrillDatabases --project acme-prod --title pack391 "
        "drill databases --stage GA --permissions "
        "datastore.databases.delete,datastore.databases.getMetadata",
        f"gcloud projects add-iam-policy-binding acme-prod --member {MEMBER} --role "
        "projects/acme-prod/roles/pack391DrillDatabases --condition "
        'expression=resource.name.startsWith("projects/acme-prod/databases/drill-"),'
        "title=pack391-drill-databases",
        f"gcloud iam service-accounts add-iam-policy-binding {RT} --project acme-prod "
        f"--member {MEMBER} --role roles/iam.serviceAccountUser",
        "gcloud secrets create PACK391_BACKUP_KEY --project acme-prod --replication-policy "
        "automatic",
        f"gcloud secrets add-iam-policy-binding PACK391_BACKUP_KEY --project acme-prod "
        f"--member {MEMBER} --role roles/secretmanager.secretAccessor",
        "./tools/node_modules/.bin/firebase target:apply hosting ops acme-prod --project acme-prod",
        *(
            f"gcloud run services add-iam-policy-binding {service} --project acme-prod "
            f"--region us-central1 --member {MEMBER} --role roles/run.invoker"
            for service in ("pack391executeloadtest", "pack391judgedeployment")
        ),
    ]
    assert [s.phase for s in plan(Inputs("acme-prod"))][-1] == Phase.AFTER_FIRST_DEPLOY
    # the same inputs, the same plan: nothing is read from the machine
    assert plan(Inputs("acme-prod")) == plan(Inputs("acme-prod"))


def test_every_api_the_firebase_cli_and_the_bundle_need_is_enabled() -> None:
    enable = plan(Inputs("acme-prod"))[0]
    for api in ("cloudfunctions", "run", "cloudbuild", "artifactregistry", "eventarc",
                "pubsub", "cloudscheduler", "cloudtasks", "firestore", "secretmanager",
                "monitoring", "iam", "iamcredentials", "storage", "firebasehosting",
                "identitytoolkit", "vpcaccess", "redis"):  # fmt: skip
        assert f"{api}.googleapis.com" in enable.argv
        assert f"#   {api}: " in enable.render()


def test_federation_trusts_one_repository_one_branch_one_environment() -> None:
    inputs = Inputs("acme-prod", project_number="123456789", github_repo="acme/pack391",
                    environment="production")  # fmt: skip
    got = commands(inputs)
    condition = (
        'assertion.repository == "acme/pack391" && assertion.ref == "refs/heads/main" '
        '&& assertion.environment == "production"'
    )
    assert attribute_condition("acme/pack391", "main", "production") == condition
    provider = next(c for c in got if "providers create-oidc" in c)
    assert provider.endswith(f"--attribute-condition {condition}")
    assert "--issuer-uri https://token.actions.githubusercontent.com" in provider
    deployer = "pack391-deployer@acme-prod.iam.gserviceaccount.com"
    assert (
        f"gcloud iam service-accounts add-iam-policy-binding {deployer} --project acme-prod "
        "--member principalSet://iam.googleapis.com/projects/123456789/locations/global/"
        "workloadIdentityPools/github/attribute.repository/acme/pack391 "
        "--role roles/iam.workloadIdentityUser"
    ) in got
    # the deployer may act as the runtime account (deploys set it), and sign as itself
    assert (
        f"gcloud iam service-accounts add-iam-policy-binding {RT} --project acme-prod "
        f"--member serviceAccount:{deployer} --role roles/iam.serviceAccountUser"
    ) in got
    assert (
        f"gcloud iam service-accounts add-iam-policy-binding {deployer} --project acme-prod "
        f"--member serviceAccount:{deployer} --role roles/iam.serviceAccountTokenCreator"
    ) in got
    # without a repository, no deploy account is planned
    assert not [c for c in commands(Inputs("acme-prod")) if "pack391-deployer" in c]


def test_backup_buckets_are_granted_one_by_one() -> None:
    got = commands(Inputs("acme-prod", project_number="42424242",
                          backup_buckets=("gs://acme-bk-us",)))  # fmt: skip
    assert (
        f"gcloud storage buckets add-iam-policy-binding gs://acme-bk-us --member {MEMBER} "
        "--role roles/storage.objectAdmin"
    ) in got
    assert (
        "gcloud storage buckets add-iam-policy-binding gs://acme-bk-us --member "
        "serviceAccount:service-42424242@gcp-sa-firestore.iam.gserviceaccount.com "
        "--role roles/storage.admin"
    ) in got


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"project": "Acme_Prod"}, "PROJECT"),
        ({"project": "demo-acme"}, "PROJECT"),
        ({"region": "mars"}, "--region"),
        ({"project_number": "12ab"}, "--project-number"),
        ({"runtime_account": "x@other-proj.iam.gserviceaccount.com"}, "--runtime-account"),
        ({"github_repo": "acme"}, "--github-repo"),
        ({"branch": "a b"}, "--branch"),
        ({"environment": "prod'; rm"}, "--environment"),
        ({"hosting_site": "A!"}, "--hosting-site"),
        ({"secrets": ("bad secret",)}, "--secret"),
        ({"backup_buckets": ("s3://x",)}, "--backup-bucket"),
    ],
)
def test_bad_input_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BootstrapError) as refused:
        plan(Inputs(**{"project": "acme-prod", **change}))
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


def test_the_default_secrets_are_every_secret_param() -> None:
    assert "PACK391_BACKUP_KEY" in secret_params()
    assert list(secret_params()) == sorted(secret_params())


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    """The manifest as firebase deploy's discovery reads it (a process of its own, so no
    test's import order shapes it), for a real project."""
    from stack.release.discovery import read_manifest

    return read_manifest(env_file_values={"GCLOUD_PROJECT": "acme-prod"})


def test_every_task_queue_function_gets_its_invoker(manifest: dict[str, Any]) -> None:
    task_functions = {
        name.lower().replace("_", "-")
        for name, endpoint in manifest["endpoints"].items()
        if "taskQueueTrigger" in endpoint
    }
    assert task_functions == set(TASK_FUNCTIONS)
    # firebase-functions 0.6.0 takes a task function's invoker but writes none into the
    # manifest (its TaskQueueTrigger has no such field), so firebase deploy grants nothing:
    # the bootstrap's after-first-deploy step binds roles/run.invoker itself
    for endpoint in manifest["endpoints"].values():
        assert "invoker" not in endpoint.get("taskQueueTrigger", {})


def test_every_function_runs_as_the_runtime_account(manifest: dict[str, Any]) -> None:
    accounts = {e.get("serviceAccountEmail") for e in manifest["endpoints"].values()}
    assert accounts == {RT}
    assert len(manifest["endpoints"]) > 30


def test_a_malformed_runtime_account_names_the_param(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.options import runtime_service_account

    assert runtime_service_account("acme-prod") == RT
    monkeypatch.setenv("PACK391_RUNTIME_SERVICE_ACCOUNT", "runtime@")
    with pytest.raises(ValueError, match="PACK391_RUNTIME_SERVICE_ACCOUNT='runtime@'"):
        runtime_service_account("acme-prod")


FAKE_GCLOUD = """#!/bin/sh
printf '%s\\n' "$*" >> "$GCLOUD_LOG"
case "$*" in
  "projects describe"*) echo 123456789 ;;
  *"service-accounts create"*) echo "ERROR: ALREADY_EXISTS: already exists" >&2; exit 1 ;;
  *"$GCLOUD_FAIL_ON"*) echo "ERROR: PERMISSION_DENIED" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in gcloud first on PATH: records each call, answers describe, says "already
    exists" to creations, fails the call containing $GCLOUD_FAIL_ON."""
    script = tmp_path / "bin" / "gcloud"
    script.parent.mkdir()
    script.write_text(FAKE_GCLOUD)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GCLOUD_LOG", str(log))
    monkeypatch.setenv("GCLOUD_FAIL_ON", "never-matches")
    return log


def test_a_run_executes_one_phase_in_order(
    gcloud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["bootstrap", "acme-prod", "--secret", "S1", "--phase", "after-first-deploy"])
    assert code == 0
    calls = gcloud.read_text().splitlines()
    assert calls == [
        "projects describe acme-prod --format=value(projectNumber)",
        *(
            f"run services add-iam-policy-binding {service} --project acme-prod "
            f"--region us-central1 --member {MEMBER} --role roles/run.invoker"
            for service in TASK_FUNCTIONS
        ),
    ]
    assert "# Cloud Tasks calls pack391executeloadtest" in capsys.readouterr().out


def test_a_run_stops_at_the_first_failure(
    gcloud: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GCLOUD_FAIL_ON", "roles/monitoring.viewer")
    code = cli.main(["bootstrap", "acme-prod", "--secret", "S1", "--hosting-site", "acme-ops"])
    assert code == 1
    calls = gcloud.read_text().splitlines()
    assert calls[-1].endswith("--role roles/monitoring.viewer --condition None")
    # the account already existed (a second run): counted as done, the run went on
    assert any("service-accounts create pack391-runtime" in c for c in calls)
    assert "failed: gcloud projects add-iam-policy-binding" in capsys.readouterr().err
    assert not [c for c in calls if "secrets" in c]


def test_dry_run_prints_both_phases_and_runs_nothing(
    gcloud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["bootstrap", "acme-prod", "--dry-run", "--github-repo", "acme/x"]) == 0
    out = capsys.readouterr().out
    assert "# ==== phase setup" in out and "# ==== phase after-first-deploy (2 steps)" in out
    assert "projects/PROJECT_NUMBER/locations/global" in out
    assert not gcloud.exists()
    assert cli.main(["bootstrap", "demo-x", "--dry-run"]) == 2
    assert "PROJECT: 'demo-x' is a demo project" in capsys.readouterr().err
