"""``pack391 bootstrap PROJECT``: set a real project up once, least privilege, as a
reviewable list of ``gcloud`` (and one ``firebase``) commands.

The plan is :func:`stack.release.bootstrap_plan.plan`, a pure function of its inputs.
``--dry-run`` prints it; without it, :func:`stack.release.bootstrap.run` executes the steps
of one phase in order and stops at the first failure (a step that creates something counts
"already exists" as done, so a second run goes through). docs/bootstrap.md walks through
the plan.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from typing import Any

from stack.release.bootstrap import Runner, project_number, run, run_process
from stack.release.bootstrap_plan import BootstrapError, Inputs, Phase, plan, render, secret_params


def add_parser(sub: Any) -> None:
    boot = sub.add_parser(
        "bootstrap",
        help="set a real project up once: APIs, accounts, least-privilege roles (gcloud)",
        description=(
            "Prints (--dry-run) or runs the gcloud commands that set PROJECT up: the APIs, "
            "the functions' runtime service account with exactly the roles their API calls "
            "need, the CI deploy account with workload identity federation limited to one "
            "repository, branch and environment, and the Hosting target 'ops'. "
            "docs/bootstrap.md explains each step."
        ),
    )
    boot.add_argument("project", metavar="PROJECT")
    boot.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    boot.add_argument(
        "--region", default="us-central1", help="the functions' region (PACK391_REGION)"
    )
    boot.add_argument("--project-number", help="default: read with gcloud projects describe")
    boot.add_argument(
        "--runtime-account", help="default pack391-runtime@PROJECT.iam.gserviceaccount.com"
    )
    boot.add_argument(
        "--github-repo", metavar="OWNER/NAME", help="plan the CI deploy account for it"
    )
    boot.add_argument("--branch", default="main", help="the only branch that may deploy")
    boot.add_argument("--environment", default="production", help="the only GitHub environment")
    boot.add_argument("--hosting-site", help="the ops page's site (default: PROJECT)")
    boot.add_argument(
        "--secret",
        action="append",
        dest="secrets",
        metavar="NAME",
        help="a secret to create and bind (default: every secret param)",
    )
    boot.add_argument(
        "--backup-bucket",
        action="append",
        dest="buckets",
        default=[],
        metavar="gs://BUCKET",
        help="a backup bucket (PACK391_BACKUP_BUCKETS ...)",
    )
    boot.add_argument(
        "--phase",
        choices=[p.value for p in Phase],
        default=Phase.SETUP.value,
        help="what to run (default setup; after-first-deploy once deployed)",
    )
    boot.set_defaults(func=cmd_bootstrap)  # fmt: skip


def cmd_bootstrap(args: argparse.Namespace, runner: Runner = run_process) -> int:
    inputs = Inputs(
        project=args.project,
        region=args.region,
        project_number=args.project_number,
        runtime_account=args.runtime_account,
        github_repo=args.github_repo,
        branch=args.branch,
        environment=args.environment,
        hosting_site=args.hosting_site,
        secrets=tuple(args.secrets) if args.secrets is not None else secret_params(),
        backup_buckets=tuple(args.buckets),
    )
    try:
        steps = plan(inputs)
        if args.dry_run:
            print(render(steps))
            return 0
        if shutil.which("gcloud") is None and runner is run_process:
            print("pack391 bootstrap: gcloud is not on PATH (or use --dry-run)", file=sys.stderr)
            return 2
        if inputs.project_number is None:
            number = project_number(inputs.project, runner)
            steps = plan(replace(inputs, project_number=number))
    except BootstrapError as exc:
        print(f"pack391 bootstrap: {exc}", file=sys.stderr)
        return 2
    return run(steps, Phase(args.phase), runner)
