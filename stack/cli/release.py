"""``pack391 deploy env``, ``pack391 deploy secrets`` and ``pack391 deploy hosting-config``
(:mod:`stack.release.hosting_config`): what a non-interactive ``firebase deploy`` needs
before it starts.

The Firebase CLI reads the functions manifest (``GET /__/functions.yaml`` from the SDK's
``serving.py``), then resolves every param from the dotenv files of the source directory
(``.env``, ``.env.<projectId>``, ``.env.<alias>``; later files win: firebase-tools
``lib/functions/env.js`` ``loadUserEnvs``). A param counts as resolved when a file *names*
it, whatever the value; with ``--non-interactive`` the CLI stops at the first non-secret
param none of them names, defaults included (``lib/deploy/functions/params.js``
``resolveParams``). Secret params are looked up in Secret Manager instead and must exist
first (``ensureSecret``).

``deploy env`` reads the manifest the same way, takes each non-secret param's value from
the repository variables (an environment variable of the param's own name, or a JSON
object of variables such as GitHub's ``${{ toJSON(vars) }}``), else its committed default,
checks it against the param's type as both the CLI and the Python SDK read it, and writes
``.env.<projectId>`` in the dotenv dialect of ``env.js``. It refuses (naming every
offending param) rather than write a file that would leave a param unresolved or hold a
value the param's type rejects. Secrets are never written.

Canonical values written:

- string: as is (double-quoted with ``env.js``'s escapes when it is not a plain word);
- int: decimal digits with an optional ``-`` (what ``+raw`` in JavaScript and ``int()`` in
  Python both read the same way), a safe JavaScript integer;
- boolean: ``true`` or ``false`` (the CLI reads ``true/y/yes/1`` as true, the Python SDK
  only ``true`` in any case: only these two spellings mean the same to both);
- list: a JSON array of strings (the CLI parses a value containing ``[`` as JSON and hands
  the functions ``JSON.stringify`` of the list, which the Python SDK parses back; an empty
  value would become ``[""]``, so an empty list is written ``[]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from stack.release import hosting_config
from stack.release.discovery import SOURCE_DIR, manifest_params, read_manifest
from stack.release.dotenv import parse_dotenv
from stack.release.envfile import (
    ParamError,
    json_variables,
    render,
    resolve,
    template,
    variables_from,
)
from stack.release.secret_manager import create_secrets, missing_secrets
from stack.release.shape import deploy_services_problems, shape_problems

COMMANDS = ("env", "secrets", "hosting-config")
"""The ``pack391 deploy`` subcommands this module adds."""


def add_parsers(dsub: Any) -> None:
    """``pack391 deploy env``, ``pack391 deploy secrets`` and ``pack391 deploy hosting-config``."""
    env = dsub.add_parser(
        "env",
        help="write .env.<project> for a non-interactive firebase deploy (every param)",
        description=(
            "Reads the functions manifest as the Firebase CLI does and writes every non-secret "
            "param to .env.<project> in the source directory: the environment variable of the "
            "param's own name (or the JSON object of --vars-json-env), else its default. Fails, "
            "naming each param, when one has no value or a value its type rejects."
        ),
    )
    target = env.add_mutually_exclusive_group(required=True)
    target.add_argument("--project", help="the project id: writes .env.<project>")
    target.add_argument("--example", action="store_true", help="print the .env.example template")
    env.add_argument(
        "--vars-json-env",
        metavar="NAME",
        help="also read variables from this environment variable's JSON object "
        "(GitHub: ${{ toJSON(vars) }})",
    )
    env.add_argument("--out-dir", type=Path, default=SOURCE_DIR, help="default: the source dir")
    env.add_argument("--manifest", type=Path, help="a saved functions.yaml instead of reading it")
    env.add_argument(
        "--bootstrap",
        action="store_true",
        help="a first deploy: PACK391_DEPLOY_SERVICES may be empty (nothing to canary yet)",
    )
    secrets = dsub.add_parser(
        "secrets",
        help="check that every secret param exists in Secret Manager (before firebase deploy)",
    )
    secrets.add_argument("--project", required=True)
    secrets.add_argument("--manifest", type=Path, help="a saved functions.yaml")
    secrets.add_argument(
        "--create",
        action="store_true",
        help="first upload each secret from the environment variable of its name (creating "
        "it when missing); a missing secret nothing binds (per .env.<project>) gets a "
        "placeholder",
    )
    hosting = dsub.add_parser(
        "hosting-config",
        help="set the Hosting target (ops -> SITE) and the rewrites' region (PACK391_REGION)",
        description=hosting_config.__doc__.split("\n\n", 1)[1] if hosting_config.__doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hosting.add_argument("--project", required=True, help="the project id (.env.<project>)")
    hosting.add_argument("--site", help="the Hosting site of the ops target (default: project)")
    hosting.add_argument("--dir", type=Path, help="where firebase.json is (default: the source)")
    hosting.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")


def _load(args: argparse.Namespace) -> dict[str, Any]:
    if args.manifest:
        loaded: dict[str, Any] = yaml.safe_load(args.manifest.read_text())
        return loaded
    return read_manifest()


def cmd(args: argparse.Namespace) -> int:
    """Run ``pack391 deploy env|secrets|hosting-config``."""
    if args.deploy_command == "hosting-config":
        return _hosting_config(args)
    manifest = _load(args)
    params = manifest_params(manifest)
    if args.deploy_command == "secrets":
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        if args.create:
            env_file = SOURCE_DIR / f".env.{args.project}"
            values = {
                **(parse_dotenv(env_file.read_text()) if env_file.exists() else {}),
                **{k: v for k, v in os.environ.items() if k.startswith("PACK391_")},
            }
            done, failed = create_secrets(params, args.project, session, os.environ, values)
            for line in done:
                print(f"pack391 deploy secrets: {line}")
            for problem in failed:
                print(f"pack391 deploy secrets: {problem}", file=sys.stderr)
        problems = missing_secrets(params, args.project, session)
        for problem in problems:
            print(f"pack391 deploy secrets: {problem}", file=sys.stderr)
        names = [p["name"] for p in params if p.get("type") == "secret"]
        if not problems:
            print(f"secrets present in {args.project}: {', '.join(names) or 'none'}")
        return 1 if problems else 0
    if args.example:
        sys.stdout.write(template(params))
        return 0
    try:
        variables = variables_from(os.environ, args.vars_json_env)
        resolved = resolve(params, variables)
        text = render(resolved, args.project)
    except ParamError as exc:
        for problem in exc.problems:
            print(f"pack391 deploy env: {problem}", file=sys.stderr)
        print("pack391 deploy env: nothing written", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pack391 deploy env: {exc}", file=sys.stderr)
        return 1
    if not args.manifest:  # discovery, as firebase deploy will run it, with these values
        try:
            again = read_manifest(
                env_file_values={
                    **parse_dotenv(text),
                    "GCLOUD_PROJECT": args.project,
                    "FIREBASE_CONFIG": json.dumps({"projectId": args.project}),
                    "GOOGLE_CLOUD_QUOTA_PROJECT": args.project,
                }
            )
        except RuntimeError as exc:
            print(f"pack391 deploy env: firebase deploy's discovery fails with these values: "
                  f"{exc}", file=sys.stderr)  # fmt: skip
            print("pack391 deploy env: nothing written", file=sys.stderr)
            return 1
        if manifest_params(again) != params:
            print("pack391 deploy env: the params change with these values", file=sys.stderr)
            return 1
        manifest = again
    problems = shape_problems(manifest, parse_dotenv(text), args.project)
    problems += deploy_services_problems(manifest, parse_dotenv(text), args.project, args.bootstrap)
    if problems:  # the deploy would go through and leave the functions open: refuse
        for problem in problems:
            print(f"pack391 deploy env: {problem}", file=sys.stderr)
        print("pack391 deploy env: nothing written", file=sys.stderr)
        return 1
    known = {str(p.get("name")) for p in params}
    for name in sorted(json_variables(os.environ, args.vars_json_env)):
        if name.startswith("PACK391_") and name not in known:
            print(f"pack391 deploy env: variable {name} is not a param (typo?)", file=sys.stderr)
    path = args.out_dir / f".env.{args.project}"
    path.write_text(text)
    for item in resolved:
        print(f"{item.name}: {item.source}")
    print(f"wrote {path} ({len(resolved)} params)")
    return 0


PROG = "pack391 deploy hosting-config"


def _hosting_config(args: argparse.Namespace) -> int:
    """Run ``pack391 deploy hosting-config``."""
    root = args.dir or SOURCE_DIR
    site = args.site or args.project
    try:
        changed = hosting_config.apply(root, args.project, site, check=args.check)
    except hosting_config.HostingConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    region = hosting_config.region_of(root, args.project)
    if args.check and changed:
        print(f"{PROG}: {', '.join(changed)} not configured for {args.project} "
              f"(site {site}, region {region})", file=sys.stderr)  # fmt: skip
        return 1
    print(f"hosting target {hosting_config.TARGET} -> {site}; rewrites -> {region}"
          f"{' (changed: ' + ', '.join(changed) + ')' if changed else ''}")  # fmt: skip
    return 0
