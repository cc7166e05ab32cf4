"""``pack391 deploy hosting-config``: the Hosting target and the rewrites' region from the
deploy's configuration.

The committed ``.firebaserc`` maps the ``ops`` target only for the demo project, and the
rewrites of ``firebase.json`` name a region. Before ``firebase deploy --only hosting``, the
deploy job runs this command, which writes, in the checkout:

- ``.firebaserc``: ``targets.<project>.hosting.ops = [SITE]`` (what ``firebase target:apply
  hosting ops SITE`` writes), SITE from the repository variable PACK391_HOSTING_SITE (default:
  the project id, the project's default site);
- ``firebase.json``: the ``region`` of every rewrite to a function = PACK391_REGION as
  ``.env.<project>`` holds it, the file ``pack391 deploy env`` wrote and ``firebase deploy
  --only functions`` deploys the functions with. One source, so the rewrites reach the
  functions where they are.

``--check`` writes nothing and exits 1 when either file differs from what it would write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TARGET = "ops"
"""firebase.json's hosting target."""
REGION_PARAM = "PACK391_REGION"
"""The functions' region param (shared/config/common.py FUNCTIONS_REGION)."""
PROG = "pack391 deploy hosting-config"


class HostingConfigError(ValueError):
    """The configuration cannot be written (a missing env file, no region)."""


def region_of(root: Path, project: str) -> str:
    """PACK391_REGION as ``.env.<project>`` (written by ``pack391 deploy env``) holds it."""
    from stack.release.dotenv import parse_dotenv

    path = root / f".env.{project}"
    if not path.is_file():
        raise HostingConfigError(f"{path.name} is missing: run `pack391 deploy env` first")
    region = parse_dotenv(path.read_text()).get(REGION_PARAM, "")
    if not region:
        raise HostingConfigError(f"{path.name} has no {REGION_PARAM}")
    return region


def configured(
    firebase: dict[str, Any], firebaserc: dict[str, Any], project: str, site: str, region: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copies of ``firebase.json`` and ``.firebaserc`` with the target and region set."""
    firebase = json.loads(json.dumps(firebase))
    firebaserc = json.loads(json.dumps(firebaserc))
    hostings = firebase.get("hosting")
    for hosting in hostings if isinstance(hostings, list) else [hostings]:
        if not isinstance(hosting, dict) or hosting.get("target") != TARGET:
            continue
        for rewrite in hosting.get("rewrites", []):
            function = rewrite.get("function")
            if isinstance(function, dict):
                function["region"] = region
            elif isinstance(function, str):  # the short form: a function id in us-central1
                rewrite["function"] = {"functionId": function, "region": region}
    targets = firebaserc.setdefault("targets", {}).setdefault(project, {})
    targets.setdefault("hosting", {})[TARGET] = [site]
    return firebase, firebaserc


def apply(root: Path, project: str, site: str, *, check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) the two files under ``root``; what differs."""
    region = region_of(root, project)
    paths = {"firebase.json": root / "firebase.json", ".firebaserc": root / ".firebaserc"}
    before = {name: json.loads(path.read_text()) for name, path in paths.items()}
    after = dict(
        zip(paths, configured(before["firebase.json"], before[".firebaserc"], project, site,
                              region), strict=True)
    )  # fmt: skip
    changed = [name for name in paths if after[name] != before[name]]
    if not check:
        for name in changed:
            paths[name].write_text(json.dumps(after[name], indent=2) + "\n")
    return changed


def add_parser(dsub: Any) -> None:
    hosting = dsub.add_parser(
        "hosting-config",
        help="set the Hosting target (ops -> SITE) and the rewrites' region (PACK391_REGION)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hosting.add_argument("--project", required=True, help="the project id (.env.<project>)")
    hosting.add_argument("--site", help="the Hosting site of the ops target (default: project)")
    hosting.add_argument("--dir", type=Path, help="where firebase.json is (default: the source)")
    hosting.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")


def cmd(args: argparse.Namespace) -> int:
    from stack.release.discovery import SOURCE_DIR

    root = args.dir or SOURCE_DIR
    site = args.site or args.project
    try:
        changed = apply(root, args.project, site, check=args.check)
    except HostingConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    region = region_of(root, args.project)
    if args.check and changed:
        print(f"{PROG}: {', '.join(changed)} not configured for {args.project} "
              f"(site {site}, region {region})", file=sys.stderr)  # fmt: skip
        return 1
    print(f"hosting target {TARGET} -> {site}; rewrites -> {region}"
          f"{' (changed: ' + ', '.join(changed) + ')' if changed else ''}")  # fmt: skip
    return 0
