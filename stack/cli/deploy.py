"""``pack391 deploy``: the deploy guard from the command line (validate, pin traffic,
start, status, wait, rollback, control), the deploy token of a deployed project, the
local platform's new revision, and the deploy environment (:mod:`stack.cli.release`).

Calls go through :func:`stack.cli.caller.invoke`: the local stack by default, a deployed
project with PACK391_FUNCTIONS_URL and PACK391_ID_TOKEN."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from stack.cli import caller, release
from stack.cli.deploy_token import mint_id_token

FINAL_PHASES = {"succeeded": 0, "rolled_back": 1, "failed": 1}
"""Exit code of ``pack391 deploy wait`` per final phase (2: timed out)."""


def add_parser(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy",
        help="the deploy guard: validate, pin traffic, start, watch, roll back",
        description=(
            "Talks to the local stack by default. For a deployed project set "
            "PACK391_FUNCTIONS_URL (e.g. https://us-central1-PROJECT.cloudfunctions.net) and "
            "PACK391_ID_TOKEN (from `pack391 deploy token`)."
        ),
    )
    dsub = deploy.add_subparsers(dest="deploy_command", required=True, metavar="ACTION")

    def env_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--env", required=required, help="environment, e.g. production")

    def services_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--services", nargs="+", help="Cloud Run services (default: configured)")

    validate = dsub.add_parser("validate", help="run the pre-deploy gates (exit 1 if one fails)")
    validate.add_argument("--version", required=True)
    env_arg(validate)
    services_arg(validate)
    pin = dsub.add_parser("pin-traffic", help="pin traffic to the serving revisions")
    env_arg(pin)
    services_arg(pin)
    start = dsub.add_parser("start", help="start a canary deployment")
    start.add_argument("--version", required=True)
    env_arg(start)
    services_arg(start)
    start.add_argument("--force", action="store_true", help="start without a passing report")
    start.add_argument("--reason", help="why (required with --force)")
    start.add_argument("--bake-sec", type=int, help="hold of each step (default 300)")
    start.add_argument("--id-only", action="store_true", help="print only the deployment id")
    status = dsub.add_parser("status", help="one deployment, or the recent ones")
    status.add_argument("deployment_id", nargs="?")
    env_arg(status, required=False)
    wait = dsub.add_parser(
        "wait", help="poll until succeeded (exit 0), rolled back/failed (1) or timeout (2)"
    )
    wait.add_argument("deployment_id")
    wait.add_argument("--timeout", type=float, default=3600.0, help="seconds")
    wait.add_argument("--interval", type=float, default=15.0, help="seconds between polls")
    rollback = dsub.add_parser("rollback", help="100%% back to the stable revisions")
    rollback.add_argument("deployment_id")
    rollback.add_argument("--reason", required=True)
    control = dsub.add_parser("control", help="promote, pause, resume or abort")
    control.add_argument("deployment_id")
    control.add_argument("action", choices=["promote", "pause", "resume", "abort"])
    control.add_argument("--reason", required=True)
    token = dsub.add_parser(
        "token", help="mint a deployed project's admin ID token for a service account"
    )
    token.add_argument("--uid", default="deploy-bot", help="the Firebase user id to sign in as")
    token.add_argument(
        "--api-key",
        default=os.environ.get("FIREBASE_WEB_API_KEY", ""),
        help="the project's web API key (FIREBASE_WEB_API_KEY)",
    )
    token.add_argument(
        "--service-account",
        default=os.environ.get("PACK391_DEPLOY_SERVICE_ACCOUNT") or None,
        help="sign through IAM signBlob as this account (PACK391_DEPLOY_SERVICE_ACCOUNT; "
        "default: the key file's own key, or the account workload identity impersonates)",
    )
    release.add_parsers(dsub)
    run_rev = dsub.add_parser(
        "run-revision",
        help="a Cloud Run service's new revision at 0 %% (the canary's starting point)",
        description=(
            "The Cloud Run Admin API's `gcloud run deploy --no-traffic`, through the client "
            "library: the service's template with IMAGE (a new revision) and its current "
            "split written as explicit revision targets, in one conditional update. Exit 1 "
            "when Cloud Run reports the new revision serving anything."
        ),
    )
    run_rev.add_argument("service")
    run_rev.add_argument("--image", required=True, help="the container image of the revision")
    run_rev.add_argument("--revision", help="its name (SERVICE-suffix; default: Cloud Run's)")
    run_rev.add_argument(
        "--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT"), help="GOOGLE_CLOUD_PROJECT"
    )
    run_rev.add_argument(
        "--region",
        default=os.environ.get("PACK391_FUNCTIONS_REGION", "us-central1"),
        help="PACK391_FUNCTIONS_REGION",
    )
    run_rev.add_argument(
        "--endpoint",
        default=os.environ.get("PACK391_CLOUD_RUN_ENDPOINT") or None,
        help="a local stand-in of the Cloud Run API (default: Google's)",
    )
    run_rev.add_argument("--timeout", type=float, default=300.0, help="wait for the revision")
    local = dsub.add_parser(
        "local-revision", help="local stack only: land a new revision of a service"
    )
    local.add_argument("service")
    local.add_argument("revision")
    local.add_argument(
        "--no-traffic",
        action="store_true",
        help="land it at 0 %% (gcloud run deploy --no-traffic); default: at 100 %%, as "
        "firebase deploy lands a function's new revision",
    )
    local.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL"), help="the stack's Redis (REDIS_URL)"
    )
    revision = dsub.add_parser(
        "revision",
        help="local stack only: deploy a new revision of a service (or all), with faults",
        description=(
            "What `firebase deploy` does on the local platform: a new latest revision of "
            "SERVICE named SERVICE-NNNNN (or --name), serving 100 %% (as a function's new "
            "revision does after firebase deploy; --no-traffic: 0 %%, as gcloud run deploy "
            "--no-traffic lands a Cloud Run service's). `pack391 deploy pin-traffic` before "
            "it records the stable revision the canary goes back to. The sandbox applies its "
            "faults only to the requests the revision serves."
        ),
    )
    revision.add_argument("service", metavar="SERVICE", help="a registry service, or all")
    revision.add_argument("--name", help="the revision's name (default SERVICE-NNNNN)")
    revision.add_argument(
        "--no-traffic", action="store_true", help="land it at 0 %% (gcloud run deploy --no-traffic)"
    )
    revision.add_argument(
        "--error-pct", type=float, default=0.0, help="share of its requests answering 500"
    )
    revision.add_argument(
        "--latency-ms", type=float, default=0.0, help="latency added to each of its requests"
    )
    revision.add_argument(
        "--fail-payouts", action="store_true", help="its /payout/request fails (anomalies)"
    )
    revision.add_argument(
        "--token-mismatch",
        action="store_true",
        help="its /chat/message debits a wrong amount (token mismatches)",
    )
    revision.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="the stack's Redis (default: REDIS_URL, else the running stack's state file)",
    )
    deploy.set_defaults(func=cmd_deploy)


def _print(result: Any) -> None:
    print(json.dumps(result, indent=2, sort_keys=True), flush=True)


def _deploy_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    services = {"services": args.services} if getattr(args, "services", None) else {}
    if args.deploy_command == "validate":
        return "pack391_preDeployValidator", {
            "version": args.version,
            "environment": args.env,
            **services,
        }
    if args.deploy_command == "pin-traffic":
        return "pack391_pinTraffic", {"environment": args.env, **services}
    if args.deploy_command == "start":
        data: dict[str, Any] = {"version": args.version, "environment": args.env, **services}
        if args.force:
            data.update(force=True, reason=args.reason)
        elif args.reason:
            data["reason"] = args.reason
        if args.bake_sec is not None:
            data["bakeSec"] = args.bake_sec
        return "pack391_startDeployment", data
    if args.deploy_command == "status":
        if args.deployment_id:
            return "pack391_getDeploymentStatus", {"deploymentId": args.deployment_id}
        return "pack391_getDeploymentStatus", {"environment": args.env} if args.env else {}
    if args.deploy_command == "rollback":
        return "pack391_rollbackController", {
            "deploymentId": args.deployment_id,
            "reason": args.reason,
        }
    return "pack391_controlDeployment", {
        "deploymentId": args.deployment_id,
        "action": args.action,
        "reason": args.reason,
    }


def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        if args.deploy_command == "wait":
            return _wait(args)
        if args.deploy_command == "token":
            print(mint_id_token(args.uid, args.api_key, args.service_account))
            return 0
        if args.deploy_command in release.COMMANDS:
            return release.cmd(args)
        if args.deploy_command == "local-revision":
            return _local_revision(args)
        if args.deploy_command == "revision":
            return _revision(args)
        if args.deploy_command == "run-revision":
            return _run_revision(args)
        name, data = _deploy_request(args)
        result = caller.invoke(name, data)
    except caller.CallFailed as failed:
        return caller.report(failed)
    if args.deploy_command == "validate":
        _print(result)
        return 0 if result["passed"] else 1
    if args.deploy_command == "start" and args.id_only:
        print(result["deploymentId"])
        return 0
    _print(result)
    return 0


def _wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        status = caller.invoke("pack391_getDeploymentStatus", {"deploymentId": args.deployment_id})
        seen = (status["phase"], status["step"], status["trafficPercent"])
        if seen != last:
            print(f"{args.deployment_id}: {seen[0]} step {seen[1]} at {seen[2]}%", flush=True)
            last = seen
        if status["phase"] in FINAL_PHASES:
            if status["phase"] != "succeeded":
                _print({"phase": status["phase"], "history": status["history"][-3:]})
            return FINAL_PHASES[status["phase"]]
        if time.monotonic() >= deadline:
            print(f"pack391 deploy wait: still {status['phase']} after {args.timeout}s",
                  file=sys.stderr)  # fmt: skip
            return 2
        time.sleep(args.interval)


def _local_revision(args: argparse.Namespace) -> int:
    """What a deploy does on the local platform: a new latest revision, at 100 % (as
    firebase deploy lands a function), or at 0 % with --no-traffic."""
    from functions.deploy_guard.local import LocalTraffic

    if not args.redis_url:
        print("pack391 deploy local-revision: give --redis-url (printed by serve)", file=sys.stderr)
        return 2
    from shared.redis import client_for_url

    platform = LocalTraffic(client_for_url(args.redis_url))
    platform.deploy(args.service, args.revision, all_traffic=not args.no_traffic)
    _print({"service": args.service, "shares": platform.observe(args.service, "").shares})
    return 0


def _run_revision(args: argparse.Namespace) -> int:
    """``pack391 deploy run-revision``: a new Cloud Run revision that serves nothing."""
    from google.api_core import exceptions as gexc

    from shared.gcp.cloudrun import CloudRunServices, NewRevisionServes, services_client

    prefix = "pack391 deploy run-revision"
    if not args.project:
        print(f"{prefix}: give --project (or GOOGLE_CLOUD_PROJECT)", file=sys.stderr)
        return 2
    services = CloudRunServices(services_client(args.endpoint), args.project)
    try:
        updated, revision = services.deploy_image(
            args.service, args.region, args.image, args.revision, args.timeout
        )
    except NewRevisionServes as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    except (gexc.GoogleAPIError, TimeoutError) as exc:
        print(f"{prefix}: {args.service}: {exc}", file=sys.stderr)
        return 1
    from shared.gcp.cloudrun import serving_shares

    _print({"service": args.service, "revision": revision, "shares": serving_shares(updated)})
    return 0


def _stack_redis_url(given: str | None) -> str | None:
    """``--redis-url`` / REDIS_URL, else the running stack's (its state file)."""
    if given:
        return given
    from stack.platform.handle import NoStackError, StackHandle

    try:
        return StackHandle.load().redis_url
    except NoStackError:
        return None


def _revision(args: argparse.Namespace) -> int:
    """``pack391 deploy revision``: a new revision with faults on the local platform."""
    import redis as redis_lib

    from shared.redis import client_for_url
    from stack.revisions import SERVICES, LocalRevisions, RevisionFaults, describe

    prefix = "pack391 deploy revision"
    services = list(SERVICES) if args.service == "all" else [args.service]
    if args.service not in (*SERVICES, "all"):
        print(f"{prefix}: no such service {args.service!r}: one of {', '.join(SERVICES)}, or all",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.name and len(services) > 1:
        print(f"{prefix}: --name names one revision: give one SERVICE", file=sys.stderr)
        return 2
    try:
        faults = RevisionFaults(
            error_pct=args.error_pct,
            latency_ms=args.latency_ms,
            fail_payouts=args.fail_payouts,
            token_mismatch=args.token_mismatch,
        )
    except ValueError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 2
    url = _stack_redis_url(args.redis_url)
    if not url:
        print(f"{prefix}: no running stack (start `make run`) and no --redis-url", file=sys.stderr)
        return 2
    revisions = LocalRevisions(client_for_url(url))
    out = []
    for service in services:
        try:
            revisions.deploy(service, args.name, faults, all_traffic=not args.no_traffic)
        except ValueError as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return 2
        except redis_lib.RedisError as exc:
            print(f"{prefix}: cannot reach the stack's Redis at {url}: {exc}", file=sys.stderr)
            return 3
        out.append(describe(revisions, service))
    _print(out[0] if len(out) == 1 else out)
    return 0
