"""``pack391 deploy hosting-config``: the Hosting target and the rewrites' region from the
deploy's configuration (the command: :mod:`stack.cli.release`).

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

import json
from pathlib import Path
from typing import Any

TARGET = "ops"
"""firebase.json's hosting target."""
REGION_PARAM = "PACK391_REGION"
"""The functions' region param (shared/config/common.py FUNCTIONS_REGION)."""


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
