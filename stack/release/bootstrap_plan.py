"""The plan of ``pack391 bootstrap PROJECT``: a real project set up once, least privilege,
as a reviewable list of ``gcloud`` (and one ``firebase``) commands.

:func:`plan` is a pure function of :class:`Inputs`: every step is one command and the
reason for it (:mod:`stack.cli.bootstrap` prints it, :mod:`stack.release.bootstrap` runs
it). The roles come from :mod:`stack.release.permissions`, where each is tied to the API
methods that need it and the Google page that says so; docs/bootstrap.md walks through
the plan.

Phases: ``setup`` before the first deploy; ``after-first-deploy`` for what needs the
deployed functions (the task-queue functions' Cloud Run services).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from stack.release.permissions import DEPLOYER_ROLES, DRILL_ROLE_ID, ROLE_PERMISSIONS, RUNTIME_ROLES


class Phase(StrEnum):
    SETUP = "setup"
    """Before the first deploy."""
    AFTER_FIRST_DEPLOY = "after-first-deploy"
    """Once the functions exist (their Cloud Run services are what these steps bind)."""


APIS: tuple[tuple[str, str], ...] = (
    ("cloudfunctions.googleapis.com", "2nd-gen functions"),
    ("run.googleapis.com", "the functions' Cloud Run services; scaling and the canary"),
    ("cloudbuild.googleapis.com", "firebase deploy builds each function's image"),
    ("artifactregistry.googleapis.com", "where those images live"),
    ("eventarc.googleapis.com", "the Firebase CLI enables it for 2nd-gen functions"),
    ("pubsub.googleapis.com", "the Firebase CLI's scheduled functions"),
    ("cloudscheduler.googleapis.com", "scheduled functions"),
    ("cloudtasks.googleapis.com", "task-queue functions (load-test shards, the canary judge)"),
    ("firestore.googleapis.com", "the bundle's data, managed backups, drills"),
    ("secretmanager.googleapis.com", "secret params"),
    ("monitoring.googleapis.com", "Cloud Run metrics for the scale guard and the canary"),
    ("iam.googleapis.com", "service accounts and workload identity federation"),
    ("iamcredentials.googleapis.com", "signBlob for the deploy token; federated tokens"),
    ("sts.googleapis.com", "workload identity federation's token exchange"),
    ("cloudresourcemanager.googleapis.com", "project IAM policy bindings"),
    ("serviceusage.googleapis.com", "the Firebase CLI checks which APIs are on"),
    ("storage.googleapis.com", "backup buckets, function sources"),
    ("firebase.googleapis.com", "the Firebase CLI's project calls"),
    ("firebasehosting.googleapis.com", "the ops page"),
    ("firebaseextensions.googleapis.com", "firebase deploy lists extensions"),
    ("identitytoolkit.googleapis.com", "Firebase Auth: the deploy bot signs in"),
    ("redis.googleapis.com", "Memorystore for Redis"),
    ("vpcaccess.googleapis.com", "the Serverless VPC Access connector to Memorystore"),
    ("compute.googleapis.com", "the connector's network"),
)
"""Every API the Firebase CLI and the bundle need, with why."""

TASK_FUNCTIONS: tuple[str, ...] = ("pack391executeloadtest", "pack391judgedeployment")
"""Cloud Run services of the task-queue functions (function id lower-cased, ``_`` as
``-``): Cloud Tasks calls them with the runtime account's OIDC token
(tests/stack/test_bootstrap.py checks this list against main.py's manifest)."""

RUNTIME_ACCOUNT_ID = "pack391-runtime"
DEPLOYER_ACCOUNT_ID = "pack391-deployer"
POOL = "github"
PROVIDER = "pack391-repo"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
FIREBASE = "./tools/node_modules/.bin/firebase"
PROJECT_NUMBER_PLACEHOLDER = "PROJECT_NUMBER"

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(?:-[a-z]+)+[0-9]+$")
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_BUCKET = re.compile(r"^gs://([a-z0-9][-a-z0-9_.]{1,220}[a-z0-9])/?$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SITE = re.compile(r"^[a-z0-9][-a-z0-9]{2,61}[a-z0-9]$")
PROJECT_NUMBER_RE = re.compile(r"^[0-9]{6,20}$")
_ACCOUNT = re.compile(r"^([a-z][-a-z0-9]{4,28}[a-z0-9])@([-a-z0-9]+)\.iam\.gserviceaccount\.com$")


class BootstrapError(ValueError):
    """Bad input, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Inputs:
    project: str
    region: str = "us-central1"
    project_number: str | None = None
    """Needed for federation and the Firestore service agent (looked up when running)."""
    runtime_account: str | None = None
    """Default ``pack391-runtime@PROJECT.iam.gserviceaccount.com``."""
    github_repo: str | None = None
    """``OWNER/NAME``: with it, the CI deploy account and its federation are planned."""
    branch: str = "main"
    environment: str = "production"
    hosting_site: str | None = None
    """Default the project's default site (its id)."""
    secrets: tuple[str, ...] = ()
    backup_buckets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    why: str
    argv: tuple[str, ...]
    phase: Phase = Phase.SETUP
    creates: bool = False
    """Creates something: "already exists" from a second run counts as done."""

    def render(self) -> str:
        comment = "\n".join(f"# {line}" for line in self.why.splitlines())
        return f"{comment}\n{shlex.join(self.argv)}"


def runtime_account(inputs: Inputs) -> str:
    return (
        inputs.runtime_account or f"{RUNTIME_ACCOUNT_ID}@{inputs.project}.iam.gserviceaccount.com"
    )


def deployer_account(project: str) -> str:
    return f"{DEPLOYER_ACCOUNT_ID}@{project}.iam.gserviceaccount.com"


def validate(inputs: Inputs) -> None:
    """Raise :class:`BootstrapError` naming the first bad field."""
    if not _PROJECT.match(inputs.project):
        raise BootstrapError(
            "PROJECT", f"{inputs.project!r} is not a project id (6-30 of a-z 0-9 -)"
        )
    if inputs.project.startswith("demo-"):
        raise BootstrapError(
            "PROJECT", f"{inputs.project!r} is a demo project: it never reaches Google"
        )
    if not _REGION.match(inputs.region):
        raise BootstrapError(
            "--region", f"{inputs.region!r} is not a Cloud region such as us-central1"
        )
    if inputs.project_number is not None and not PROJECT_NUMBER_RE.match(inputs.project_number):
        raise BootstrapError(
            "--project-number", f"{inputs.project_number!r} is not a project number"
        )
    account = _ACCOUNT.match(runtime_account(inputs))
    if account is None or account.group(2) != inputs.project:
        raise BootstrapError(
            "--runtime-account",
            f"{runtime_account(inputs)!r}: give ID@{inputs.project}.iam.gserviceaccount.com "
            "(the bootstrap creates it in this project)",
        )
    if inputs.github_repo is not None and not _REPO.match(inputs.github_repo):
        raise BootstrapError("--github-repo", f"{inputs.github_repo!r}: give OWNER/NAME")
    if not _BRANCH.match(inputs.branch) or ".." in inputs.branch:
        raise BootstrapError("--branch", f"{inputs.branch!r} is not a branch name")
    if not _ENVIRONMENT.match(inputs.environment):
        raise BootstrapError(
            "--environment", f"{inputs.environment!r}: letters, digits, . _ - only"
        )
    if inputs.hosting_site is not None and not _SITE.match(inputs.hosting_site):
        raise BootstrapError("--hosting-site", f"{inputs.hosting_site!r} is not a Hosting site id")
    for secret in inputs.secrets:
        if not _SECRET.match(secret):
            raise BootstrapError("--secret", f"{secret!r} is not a Secret Manager secret id")
    for bucket in inputs.backup_buckets:
        if not _BUCKET.match(bucket):
            raise BootstrapError("--backup-bucket", f"{bucket!r}: give gs://BUCKET")


def _member(account: str) -> str:
    return f"serviceAccount:{account}"


def _project_binding(project: str, account: str, role: str, why: str) -> Step:
    argv = ("gcloud", "projects", "add-iam-policy-binding", project, "--member",
            _member(account), "--role", role, "--condition", "None")  # fmt: skip
    return Step(why, argv)


def _account_binding(project: str, resource: str, member: str, role: str, why: str) -> Step:
    return Step(why, ("gcloud", "iam", "service-accounts", "add-iam-policy-binding", resource,
                      "--project", project, "--member", member, "--role", role))  # fmt: skip


def attribute_condition(repo: str, branch: str, environment: str) -> str:
    """Only this repository, on this branch, in this GitHub environment: GitHub's OIDC
    token claims ``repository``, ``ref`` and ``environment``."""
    return (
        f'assertion.repository == "{repo}" && assertion.ref == "refs/heads/{branch}" '
        f'&& assertion.environment == "{environment}"'
    )


def plan(inputs: Inputs) -> list[Step]:
    """Every step, in order (both phases). Raises :class:`BootstrapError` on bad input."""
    validate(inputs)
    p = inputs.project
    number = inputs.project_number or PROJECT_NUMBER_PLACEHOLDER
    runtime = runtime_account(inputs)
    account_id = runtime.split("@", 1)[0]
    apis = [name for name, _ in APIS]
    steps = [
        Step("the APIs the Firebase CLI and the bundle call:\n" + "\n".join(
            f"  {name.split('.')[0]}: {why}" for name, why in APIS),
             ("gcloud", "services", "enable", *apis, "--project", p)),
        Step("the functions' own identity (set in every function by "
             "PACK391_RUNTIME_SERVICE_ACCOUNT), instead of the default compute account",
             ("gcloud", "iam", "service-accounts", "create", account_id, "--project", p,
              "--display-name", "pack391 functions runtime"), creates=True),
    ]  # fmt: skip
    for grant in RUNTIME_ROLES:
        if grant.on == "project":
            steps.append(_project_binding(p, runtime, grant.role, grant.why))
    drill = ROLE_PERMISSIONS[f"roles/{DRILL_ROLE_ID}"]
    steps.append(
        Step(
            "a custom role holding only database delete (roles/datastore.owner would also give "
            "every document and the default database)",
            (
                "gcloud",
                "iam",
                "roles",
                "create",
                DRILL_ROLE_ID,
                "--project",
                p,
                "--title",
                "pack391 drill databases",
                "--stage",
                "GA",
                "--permissions",
                ",".join(sorted(drill.permissions)),
            ),
            creates=True,
        )
    )
    steps.append(
        Step(
            "restore drills delete the databases they cloned (drill-*), and no other",
            (
                "gcloud",
                "projects",
                "add-iam-policy-binding",
                p,
                "--member",
                _member(runtime),
                "--role",
                f"projects/{p}/roles/{DRILL_ROLE_ID}",
                "--condition",
                f'expression=resource.name.startsWith("projects/{p}/databases/drill-"),'
                "title=pack391-drill-databases",
            ),
        )
    )
    steps.append(
        _account_binding(
            p,
            runtime,
            _member(runtime),
            "roles/iam.serviceAccountUser",
            "actAs itself: each load-test task carries an OIDC token of this account (Cloud "
            "Tasks requires actAs on it), and Cloud Run updates keep it as the identity",
        )
    )
    for secret in inputs.secrets:
        steps.append(
            Step(
                f"the secret param {secret} (its value: firebase functions:secrets:set {secret})",
                (
                    "gcloud",
                    "secrets",
                    "create",
                    secret,
                    "--project",
                    p,
                    "--replication-policy",
                    "automatic",
                ),
                creates=True,
            )
        )
        steps.append(
            Step(
                f"the functions read {secret} (bound as an environment variable); this secret "
                "only, not every secret of the project",
                (
                    "gcloud",
                    "secrets",
                    "add-iam-policy-binding",
                    secret,
                    "--project",
                    p,
                    "--member",
                    _member(runtime),
                    "--role",
                    "roles/secretmanager.secretAccessor",
                ),
            )
        )
    if inputs.backup_buckets:
        steps.append(
            Step(
                "Firestore's service agent, which writes managed exports into the buckets",
                (
                    "gcloud",
                    "beta",
                    "services",
                    "identity",
                    "create",
                    "--service",
                    "firestore.googleapis.com",
                    "--project",
                    p,
                ),
            )
        )
    for bucket in inputs.backup_buckets:
        name = bucket.removeprefix("gs://").rstrip("/")
        for grant in (g for g in RUNTIME_ROLES if g.on == "backup-buckets"):
            steps.append(
                Step(
                    f"gs://{name} (this bucket only): {grant.why}",
                    (
                        "gcloud",
                        "storage",
                        "buckets",
                        "add-iam-policy-binding",
                        f"gs://{name}",
                        "--member",
                        _member(runtime),
                        "--role",
                        grant.role,
                    ),
                )
            )
        steps.append(
            Step(
                f"Firestore's service agent writes managed exports into gs://{name} (Firestore's "
                "export documentation: the agent needs the bucket)",
                (
                    "gcloud",
                    "storage",
                    "buckets",
                    "add-iam-policy-binding",
                    f"gs://{name}",
                    "--member",
                    f"serviceAccount:service-{number}@gcp-sa-firestore.iam.gserviceaccount.com",
                    "--role",
                    "roles/storage.admin",
                ),
            )
        )
    if inputs.github_repo is not None:
        steps.extend(_deployer_steps(inputs, runtime, number))
    site = inputs.hosting_site or p
    steps.append(
        Step(
            f"the Hosting target 'ops' (firebase.json's ops page) is the site {site}; writes "
            ".firebaserc: commit it",
            (FIREBASE, "target:apply", "hosting", "ops", site, "--project", p),
        )
    )
    for service in TASK_FUNCTIONS:
        steps.append(
            Step(
                f"Cloud Tasks calls {service} as the runtime account: run.invoker on that "
                "service only (the SDK does not pass the task function's invoker to the deploy)",
                (
                    "gcloud",
                    "run",
                    "services",
                    "add-iam-policy-binding",
                    service,
                    "--project",
                    p,
                    "--region",
                    inputs.region,
                    "--member",
                    _member(runtime),
                    "--role",
                    "roles/run.invoker",
                ),
                phase=Phase.AFTER_FIRST_DEPLOY,
            )
        )
    return steps  # fmt: skip


def _deployer_steps(inputs: Inputs, runtime: str, number: str) -> list[Step]:
    p = inputs.project
    repo = inputs.github_repo or ""
    deployer = deployer_account(p)
    pool = f"projects/{number}/locations/global/workloadIdentityPools/{POOL}"
    steps = [
        Step("the CI deploy identity: GitHub Actions impersonates it, no key exists",
             ("gcloud", "iam", "service-accounts", "create", DEPLOYER_ACCOUNT_ID, "--project", p,
              "--display-name", "pack391 CI deployer"), creates=True),
    ]  # fmt: skip
    for grant in DEPLOYER_ROLES:
        if grant.on == "project":
            steps.append(_project_binding(p, deployer, grant.role, grant.why))
        elif grant.on == "runtime":
            steps.append(_account_binding(p, runtime, _member(deployer), grant.role, grant.why))
        elif grant.on == "itself":
            steps.append(_account_binding(p, deployer, _member(deployer), grant.role, grant.why))
    steps += [
        Step("a pool for GitHub's OIDC tokens",
             ("gcloud", "iam", "workload-identity-pools", "create", POOL, "--project", p,
              "--location", "global", "--display-name", "GitHub Actions"), creates=True),
        Step(f"trust only {repo}, branch {inputs.branch}, environment {inputs.environment}: "
             "a token from any other repository, branch (or tag) or environment is refused at "
             "the exchange",
             ("gcloud", "iam", "workload-identity-pools", "providers", "create-oidc", PROVIDER,
              "--project", p, "--location", "global", "--workload-identity-pool", POOL,
              "--issuer-uri", GITHUB_ISSUER, "--attribute-mapping",
              "google.subject=assertion.sub,attribute.repository=assertion.repository,"
              "attribute.ref=assertion.ref,attribute.environment=assertion.environment",
              "--attribute-condition",
              attribute_condition(repo, inputs.branch, inputs.environment)), creates=True),
        _account_binding(
            p, deployer,
            f"principalSet://iam.googleapis.com/{pool}/attribute.repository/{repo}",
            "roles/iam.workloadIdentityUser",
            "tokens the provider accepted (this repository, branch and environment) may "
            "impersonate the deploy account"),
    ]  # fmt: skip
    return steps


def secret_params() -> tuple[str, ...]:
    """Every ``SecretParam`` of :mod:`shared.config`, by name."""
    from firebase_functions import params

    from shared import config

    found = {v.name for v in vars(config).values() if isinstance(v, params.SecretParam)}
    return tuple(sorted(found))


def render(steps: Sequence[Step]) -> str:
    out = []
    for phase in Phase:
        chosen = [s for s in steps if s.phase == phase]
        if chosen:
            out.append(f"# ==== phase {phase.value} ({len(chosen)} steps)")
            out.extend(step.render() + "\n" for step in chosen)
    return "\n".join(out)
