"""``pack391 deploy env`` and ``pack391 deploy secrets``: what a non-interactive
``firebase deploy`` needs before it starts.

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
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

SOURCE_DIR = Path(__file__).resolve().parent.parent
"""The functions source directory (firebase.json ``source: "."``): where the CLI looks for
its dotenv files."""

SECRET_MANAGER = "https://secretmanager.googleapis.com"
"""Secret Manager's REST endpoint (PACK391_SECRET_MANAGER_URL overrides it, for tests)."""

MAX_SAFE_INTEGER = 2**53 - 1
"""The CLI reads an int param as a JavaScript number."""

COMMANDS = ("env", "secrets", "hosting-config")
"""The ``pack391 deploy`` subcommands this module adds."""


class ParamError(ValueError):
    """The env file cannot be written: one line per offending param, each naming it."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# ------------------------------------------------------------------ the manifest


def read_manifest(
    source_dir: Path = SOURCE_DIR,
    python: str = sys.executable,
    timeout: float = 60.0,
    env_file_values: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The functions manifest, read as the Firebase CLI reads it: the SDK's
    ``firebase_functions.private.serving`` run in the source directory with ``ADMIN_PORT``,
    then ``GET /__/functions.yaml`` and ``/__/quitquitquit``.

    The discovery process gets this process's environment without REDIS_URL, the emulator
    hosts and any ``PACK391_*`` (a shell's stray values must not shape it), plus
    ``env_file_values``: what ``firebase deploy`` merges in from the dotenv files
    (``prepare.js`` passes ``loadUserEnvs`` to ``discoverBuild``). RuntimeError (with the
    server's log) when discovery fails."""
    from stack.procs import free_port

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL") and not k.startswith("PACK391_")
    }
    env.update(env_file_values or {})
    env["ADMIN_PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [python, "-m", "firebase_functions.private.serving"],
            cwd=source_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    response = requests.get(f"{base}/__/functions.yaml", timeout=(2, 30))
                    break
                except (requests.ConnectionError, requests.Timeout):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(
                            "the functions manifest server did not start:\n"
                            + log.read().decode(errors="replace")
                        ) from None
                    time.sleep(0.2)
            if response.status_code != 200:
                requests.get(f"{base}/__/quitquitquit", timeout=5)
                proc.wait(10)
                log.seek(0)
                raise RuntimeError(
                    f"GET /__/functions.yaml: HTTP {response.status_code}:\n"
                    + log.read().decode(errors="replace")[-3000:]
                )
            manifest: dict[str, Any] = yaml.safe_load(response.text)
            requests.get(f"{base}/__/quitquitquit", timeout=5)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return manifest


def manifest_params(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's params, in declaration order."""
    return list(manifest.get("params") or [])


# ------------------------------------------------------------------ dotenv (env.js)

_LINE_RE = re.compile(
    r"^\s*(?:export)?\s*([\w./]+)\s*=[\f\t\v]*"
    r"(\s*'(?:\\'|[^'])*'|\s*\"(?:\\\"|[^\"])*\"|[^#\r\n]*)?"
    r"\s*(?:#[^\n]*)?$",
    re.M | re.S | re.ASCII,
)
"""``LINE_RE`` of firebase-tools ``lib/functions/env.js`` (flags ``gms``; JavaScript's
``\\w`` is ASCII-only)."""

_ESCAPES = {
    "\\n": "\n",
    "\\r": "\r",
    "\\t": "\t",
    "\\v": "\v",
    "\\\\": "\\",
    "\\'": "'",
    '\\"': '"',
}
_UNESCAPE_RE = re.compile(r"\\[nrtv\\'\"]")
_ESCAPE_CHARS = {v: k for k, v in _ESCAPES.items()}
_ESCAPE_RE = re.compile(r"[\n\r\t\v\\'\"]")
_PLAIN_CHARS = r"A-Za-z0-9_\-./:@%+,=\[\]{}*?!~^&$()|;<>"
_PLAIN_VALUE = re.compile(rf"[{_PLAIN_CHARS}][{_PLAIN_CHARS}\"]*")
"""Written unquoted: no whitespace, ``#``, backslash or single quote anywhere, and no quote
first (``env.js`` would take a leading quote for a quoted value)."""

RESERVED_KEYS = frozenset(
    {
        "FIREBASE_CONFIG",
        "CLOUD_RUNTIME_CONFIG",
        "EVENTARC_CLOUD_EVENT_SOURCE",
        "ENTRY_POINT",
        "GCP_PROJECT",
        "GCLOUD_PROJECT",
        "GOOGLE_CLOUD_PROJECT",
        "FUNCTION_TRIGGER_TYPE",
        "FUNCTION_NAME",
        "FUNCTION_MEMORY_MB",
        "FUNCTION_TIMEOUT_SEC",
        "FUNCTION_IDENTITY",
        "FUNCTION_REGION",
        "FUNCTION_TARGET",
        "FUNCTION_SIGNATURE_TYPE",
        "K_SERVICE",
        "K_REVISION",
        "PORT",
        "K_CONFIGURATION",
    }
)
RESERVED_PREFIXES = ("X_GOOGLE_", "FIREBASE_", "EXT_", "KIT_")
"""``validateKey`` of env.js: keys a dotenv file may not set."""


def parse_dotenv(data: str) -> dict[str, str]:
    """``parseStrict`` of env.js: the key/value pairs of a dotenv file; ValueError on a line
    that is neither a pair, a comment nor blank, or on a key the CLI refuses."""
    data = re.sub(r"\r\n?", "\n", data, count=1)  # sic: env.js replaces the first only
    envs: dict[str, str] = {}
    for match in _LINE_RE.finditer(data):
        key, value = match.group(1), (match.group(2) or "").strip()
        quoted = re.search(r"^([\"'])(.*)\1$", value, re.M | re.S)
        if quoted:
            value = quoted.group(2)
            if quoted.group(1) == '"':
                value = _UNESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], value)
        envs[key] = value
    errors = [
        line.strip()
        for line in re.split(r"[\r\n]+", _LINE_RE.sub("", data))
        if line.strip() and not line.strip().startswith("#")
    ]
    if errors:
        raise ValueError(f"Invalid dotenv file, error on lines: {','.join(errors)}")
    for key in envs:
        problem = key_problem(key)
        if problem:
            raise ValueError(problem)
    return envs


def key_problem(key: str) -> str | None:
    """Why env.js's ``validateKey`` refuses ``key`` in a dotenv file, or None."""
    if key in RESERVED_KEYS:
        return f"{key} is reserved for internal use"
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
        return f"{key} must be upper-case letters, digits and underscores"
    if key.startswith(RESERVED_PREFIXES) and not key.startswith("FIREBASE_SECRET_REF_"):
        return f"{key} starts with a reserved prefix ({' '.join(RESERVED_PREFIXES)})"
    return None


def format_value(value: str) -> str:
    """``value`` as a dotenv value env.js reads back exactly."""
    if _PLAIN_VALUE.fullmatch(value):
        return value
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPE_CHARS[m.group()], value) + '"'


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Resolved:
    """One param's line in the env file."""

    name: str
    type: str
    raw: str
    """The value as written (before dotenv quoting)."""
    source: str
    """``variable`` or ``default``."""


def _is_cel(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value and "}}" in value


def _canonical(param: Mapping[str, Any], value: Any) -> str:
    """The written form of ``value`` for ``param``; ValueError saying why it is refused."""
    kind = param.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"not a string: {value!r}")
        raw = value
    elif kind == "int":
        text = value if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        if text is None or not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError(f"not an integer: {value!r}")
        if abs(int(text)) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer out of range: {value!r}")
        raw = str(int(text))
    elif kind == "boolean":
        if isinstance(value, bool):
            raw = "true" if value else "false"
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            raw = value.lower()
        else:
            raise ValueError(f"not true or false: {value!r}")
    elif kind == "list":
        items: Any = value
        if isinstance(value, str):
            if value.strip().startswith("["):
                try:
                    items = json.loads(value)
                except ValueError:
                    raise ValueError(f"not a JSON array: {value!r}") from None
            else:  # comma-separated, empty items dropped (the Python SDK's reading)
                items = [item for item in value.split(",") if item]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"not a list of strings: {value!r}")
        if any("'" in item for item in items):
            raise ValueError("an item holds a single quote (the CLI reads ' as \")")
        raw = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    else:
        raise ValueError(f"type {kind!r} cannot be written to an env file")
    _check_input(param, raw if kind != "list" else items, kind)
    return raw


def _check_input(param: Mapping[str, Any], value: Any, kind: Any) -> None:
    """A select input's options and a text input's validation regex, when declared."""
    spec = param.get("input") or {}
    select = spec.get("select")
    if select and kind != "list":
        options = [str(o.get("value")).lower() if kind == "boolean" else str(o.get("value"))
                   for o in select.get("options", [])]  # fmt: skip
        if str(value) not in options:
            raise ValueError(f"{value!r} is not one of {options}")
    multi = spec.get("multiSelect")
    if multi and kind == "list":
        options = [str(o.get("value")) for o in multi.get("options", [])]
        bad = [item for item in value if item not in options]
        if bad:
            raise ValueError(f"{bad} not among {options}")
    text = spec.get("text") or {}
    regex = text.get("validationRegex")
    if regex and kind != "list" and not re.search(regex, str(value)):
        raise ValueError(text.get("validationErrorMessage") or f"does not match {regex}")


def resolve(params: Sequence[Mapping[str, Any]], variables: Mapping[str, str]) -> list[Resolved]:
    """Every non-secret param's value: its variable when given (non-empty), else its
    default. ParamError naming each param that has neither, whose value its type rejects,
    whose name a dotenv file may not hold, or that is a secret given as a variable."""
    problems: list[str] = []
    out: list[Resolved] = []
    for param in params:
        name = str(param.get("name"))
        kind = param.get("type")
        given = variables.get(name, "")
        if kind == "secret":
            if given:
                problems.append(
                    f"{name}: a secret, never written to an env file; remove the variable and "
                    f"store it in Secret Manager (firebase functions:secrets:set {name})"
                )
            continue
        problem = key_problem(name)
        if problem:
            problems.append(f"{name}: the CLI refuses this name in a dotenv file: {problem}")
            continue
        if given:
            value: Any = given
            source = "variable"
        elif param.get("default") is not None:
            value = param["default"]
            source = "default"
            if _is_cel(value):
                problems.append(
                    f"{name}: its default is an expression ({value}); set the variable {name}"
                )
                continue
        else:
            problems.append(f"{name}: no value and no default; set the variable {name}")
            continue
        try:
            raw = _canonical(param, value)
        except ValueError as exc:
            problems.append(f"{name} ({kind}, from its {source}): {exc}")
            continue
        out.append(Resolved(name, str(kind), raw, source))
    if problems:
        raise ParamError(problems)
    return out


def render(resolved: Sequence[Resolved], project: str) -> str:
    """The env file's text; checked to read back exactly (``parse_dotenv``)."""
    lines = [
        f"# .env.{project}: generated by `pack391 deploy env` from the functions manifest,",
        "# repository variables and the params' defaults. Do not edit; do not commit.",
    ]
    for item in resolved:
        lines.append(f"# {item.name} ({item.type}, {item.source})")
        lines.append(f"{item.name}={format_value(item.raw)}")
    text = "\n".join(lines) + "\n"
    back = parse_dotenv(text)
    expected = {item.name: item.raw for item in resolved}
    if back != expected:  # a value this writer cannot express: refuse rather than write it
        wrong = sorted(k for k in expected if back.get(k) != expected[k])
        raise ParamError([f"{name}: does not read back from a dotenv file" for name in wrong])
    return text


def template(params: Sequence[Mapping[str, Any]]) -> str:
    """``.env.example``: every param of the manifest with its label, description and default;
    secrets as comments."""
    lines = [
        "# Every param of the functions manifest, with its committed default.",
        "# Deploys write .env.<projectId> with `./venv/bin/pack391 deploy env --project ID`",
        "# (repository variables of the params' own names override these defaults);",
        "# regenerate this file with `./venv/bin/pack391 deploy env --example > .env.example`.",
    ]
    for param in params:
        name = str(param.get("name"))
        lines.append("")
        lines.append(f"# {param.get('label') or name} ({param.get('type')})")
        for chunk in _wrap(str(param.get("description") or "")):
            lines.append(f"#   {chunk}")
        if param.get("type") == "secret":
            lines.append(f"# {name}: Secret Manager: firebase functions:secrets:set {name}")
        elif param.get("default") is None:
            lines.append(f"# {name}: no default, set it")
        else:
            raw = _canonical(param, param["default"])
            lines.append(f"{name}={format_value(raw)}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 88) -> list[str]:
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


def json_variables(environ: Mapping[str, str], json_env: str | None) -> dict[str, str]:
    """The JSON object in ``environ[json_env]`` (e.g. GitHub's ``toJSON(vars)``)."""
    if not json_env:
        return {}
    text = environ.get(json_env, "")
    loaded = json.loads(text) if text.strip() else {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{json_env} does not hold a JSON object")
    return {str(k): str(v) for k, v in loaded.items() if v is not None}


def variables_from(environ: Mapping[str, str], json_env: str | None) -> dict[str, str]:
    """The variable set: the JSON object of ``json_env``, overridden by (non-empty)
    environment variables of the same names."""
    return {**json_variables(environ, json_env), **{k: v for k, v in environ.items() if v}}


# ------------------------------------------------------------------ the deploy's shape

INGRESS_BEHIND_LOAD_BALANCER = "ALLOW_INTERNAL_AND_GCLB"
"""The manifest's ``ingressSettings`` that keeps clients from going around a load balancer."""

ORIGIN_SECRET = "PACK391_CLOUDFLARE_ORIGIN_SECRET"
"""The secret every callable binds in cloudflare mode (shared/options.py)."""

DEPLOYED_FRONT_DOORS = ("google", "load-balancer", "cloudflare")
"""``PACK391_FRONT_DOOR`` values a deployed function accepts (``direct`` is refused there)."""


LOOPBACK_HOSTS = ("localhost", "127.", "[::1]", "::1", "0.0.0.0")
"""Hosts of a Redis URL that on a deployed function are the function's own container."""


def _url_password(url: str) -> str:
    """The password a Redis URL carries (``redis://:PASS@host``, ``redis://user:PASS@host``)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url.strip()).password or ""
    except ValueError:
        return ""


def redis_problems(values: Mapping[str, str], project: str) -> list[str]:
    """A real (non-``demo-``) project must reach a real Redis: ``REDIS_URL`` is not a
    loopback address (on Cloud Run that is the container itself: every rate-limit call
    would fail, auth, wallet and payment closed for everyone) and a Serverless VPC Access
    connector is set (Memorystore has only a private address). A ``demo-`` project never
    reaches Google (the emulators), so it may."""
    if project.startswith("demo-"):
        return []
    problems: list[str] = []
    url = (values.get("REDIS_URL") or "").strip()
    host = url.split("://", 1)[-1].split("@")[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if not url or host.startswith(LOOPBACK_HOSTS):
        problems.append(
            f"REDIS_URL={url or '(unset)'}: on a deployed function that is the function's own "
            "container; set your Memorystore instance's address (redis://10.x.y.z:6379/0)"
        )
    if _url_password(url) or _url_password(values.get("PACK391_REDIS_TELEMETRY_URL") or ""):
        problems.append(
            "REDIS_URL (or PACK391_REDIS_TELEMETRY_URL) carries a password: an env file is "
            "not a secret; remove it from the URL, store it as the secret PACK391_REDIS_AUTH "
            "(pack391 deploy secrets --create) and set PACK391_REDIS_AUTH_ENABLED=true"
        )
    if not (values.get("PACK391_VPC_CONNECTOR") or "").strip():
        problems.append(
            "PACK391_VPC_CONNECTOR is empty: Memorystore has only a private address, which a "
            "function reaches through a Serverless VPC Access connector"
        )
    return problems


def derived_deploy_services(manifest: Mapping[str, Any]) -> list[str]:
    """The Cloud Run services the manifest's callables run as (lower case, ``_`` as ``-``:
    how the Cloud Functions API names a 2nd-gen function's service): the default canary
    set when ``PACK391_DEPLOY_SERVICES`` names none of the spec's separate APIs."""
    from shared.gcp.cloudrun import function_service_id

    endpoints: Mapping[str, Any] = manifest.get("endpoints") or {}
    return sorted(
        function_service_id(name)
        for name, endpoint in endpoints.items()
        if "callableTrigger" in endpoint or "httpsTrigger" in endpoint
    )


def deploy_services_problems(
    manifest: Mapping[str, Any], values: Mapping[str, str], project: str, bootstrap: bool
) -> list[str]:
    """A real project's deploy needs canary services (``PACK391_DEPLOY_SERVICES``): with
    none, ``deploy pin-traffic`` and ``deploy start`` have nothing to snapshot or move, and
    the new code goes live at 100 % unguarded. A first deploy (``--bootstrap``: no revision
    to compare with) may have none."""
    if bootstrap or project.startswith("demo-"):
        return []
    if (values.get("PACK391_DEPLOY_SERVICES") or "").strip():
        return []
    derived = ",".join(derived_deploy_services(manifest))
    return [
        "PACK391_DEPLOY_SERVICES is empty: the canary would move nothing and firebase deploy "
        "puts every function's new revision at 100 %; set it to the Cloud Run services to "
        f"guard, e.g. the bundle's callables: {derived} (or --bootstrap for a first deploy)"
    ]


def shape_problems(
    manifest: Mapping[str, Any], values: Mapping[str, str], project: str = ""
) -> list[str]:
    """What would leave the deployed functions open, or refuse every call, read from the
    manifest that discovery produced with the env file's ``values``: one line per problem.

    - every function has a ``maxInstances`` (the ceiling on the bill, issue 21);
    - ``PACK391_FRONT_DOOR`` is one a deployed function accepts (``direct`` answers every
      call ``FAILED_PRECONDITION`` there);
    - ``load-balancer``: every callable's ingress is internal and Cloud Load Balancing,
      or a client goes around the balancer and writes its ``X-Forwarded-For`` entries;
    - ``cloudflare``: every callable binds ``PACK391_CLOUDFLARE_ORIGIN_SECRET``, the proof
      that a request came through your own zone;
    - a real ``project`` has a Redis that is not loopback and a VPC connector
      (:func:`redis_problems`, issue 22)."""
    problems: list[str] = redis_problems(values, project) if project else []
    door = (values.get("PACK391_FRONT_DOOR") or "google").strip().lower()
    if door == "direct":
        problems.append(
            "PACK391_FRONT_DOOR=direct: a deployed function refuses every call in direct mode "
            "(its TCP peer is Google's front end); choose google, load-balancer or cloudflare"
        )
    elif door not in DEPLOYED_FRONT_DOORS:
        problems.append(
            f"PACK391_FRONT_DOOR={door!r}: not one of {', '.join(DEPLOYED_FRONT_DOORS)}"
        )
    endpoints: Mapping[str, Any] = manifest.get("endpoints") or {}
    for name, endpoint in sorted(endpoints.items()):
        if endpoint.get("maxInstances") is None:
            problems.append(f"{name}: no maxInstances: nothing caps what its traffic costs")
        if "callableTrigger" not in endpoint and "httpsTrigger" not in endpoint:
            continue
        ingress = endpoint.get("ingressSettings")
        if door == "load-balancer" and ingress != INGRESS_BEHIND_LOAD_BALANCER:
            problems.append(
                f"{name}: ingress {ingress or 'ALLOW_ALL (unset)'} in load-balancer mode: a "
                f"client can call it around the load balancer; it must be "
                f"{INGRESS_BEHIND_LOAD_BALANCER} (PACK391_FRONT_DOOR at discovery)"
            )
        secrets = [s.get("key") for s in endpoint.get("secretEnvironmentVariables") or []]
        if door == "cloudflare" and ORIGIN_SECRET not in secrets:
            problems.append(
                f"{name}: does not bind {ORIGIN_SECRET} in cloudflare mode: it could not tell "
                "your zone's requests from anyone else's Cloudflare Worker"
            )
        if _secret_in_use("PACK391_REDIS_AUTH", values) and "PACK391_REDIS_AUTH" not in secrets:
            problems.append(
                f"{name}: does not bind PACK391_REDIS_AUTH with PACK391_REDIS_AUTH_ENABLED=true: "
                "its front door could not reach Redis"
            )
    return problems


# ------------------------------------------------------------------ Secret Manager


OPTIONAL_SECRETS = {
    "PACK391_REDIS_AUTH": "PACK391_REDIS_AUTH_ENABLED",
    "PACK391_OPS_WEBHOOK_URL": "PACK391_OPS_WEBHOOK_ENABLED",
}
"""Secrets of a feature a BoolParam turns on (read at discovery): bound only while it is on.
Off, the secret must still exist (the CLI resolves every declared secret param) but its
value is never read."""

PLACEHOLDER = "unused"
"""What ``--create`` stores for a secret nothing binds: Secret Manager refuses an empty
payload, so "empty" cannot be stored."""


def _secret_in_use(name: str, values: Mapping[str, str]) -> bool:
    """Whether the deploy described by ``values`` binds secret ``name``."""
    flag = OPTIONAL_SECRETS.get(name)
    if flag is not None:
        return (values.get(flag) or "").strip().lower() == "true"
    if name == ORIGIN_SECRET:
        return (values.get("PACK391_FRONT_DOOR") or "").strip().lower() == "cloudflare"
    return True


def create_secrets(
    params: Sequence[Mapping[str, Any]],
    project: str,
    session: Any,
    given: Mapping[str, str],
    values: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """``deploy secrets --create``: upload each secret param's value from ``given`` (the
    environment variable of its own name) as a new version, creating the secret when it is
    missing (automatic replication, as ``firebase functions:secrets:set`` does). A missing
    secret that nothing binds under ``values`` (the deploy's env file: see
    :data:`OPTIONAL_SECRETS`) and has no value gets :data:`PLACEHOLDER`. Answers what was
    done and the problems (a secret in use with no value and none stored)."""
    import base64

    base = os.environ.get("PACK391_SECRET_MANAGER_URL", SECRET_MANAGER).rstrip("/")
    done: list[str] = []
    problems: list[str] = []
    for param in params:
        if param.get("type") != "secret":
            continue
        name = str(param.get("resourceId") or param.get("name"))
        secret = f"{base}/v1/projects/{project}/secrets/{name}"
        value = given.get(name) or ""
        exists = session.get(secret, timeout=30).status_code == 200
        if not value:
            if exists:
                continue
            if _secret_in_use(name, values):
                problems.append(f"{name}: no such secret and no value: set the environment "
                                f"variable {name} and run again")  # fmt: skip
                continue
            value = PLACEHOLDER
        if not exists:
            created = session.post(
                f"{base}/v1/projects/{project}/secrets",
                params={"secretId": name},
                json={"replication": {"automatic": {}}},
                timeout=30,
            )
            if created.status_code != 200:
                problems.append(f"{name}: creating it answered HTTP {created.status_code}: "
                                f"{created.text[:300]}")  # fmt: skip
                continue
        payload = {"payload": {"data": base64.b64encode(value.encode()).decode()}}
        added = session.post(f"{secret}:addVersion", json=payload, timeout=30)
        if added.status_code != 200:
            problems.append(f"{name}: adding a version answered HTTP {added.status_code}: "
                            f"{added.text[:300]}")  # fmt: skip
            continue
        what = "placeholder (not bound)" if value == PLACEHOLDER else "value uploaded"
        done.append(f"{name}: {'created, ' if not exists else ''}{what}")
    return done, problems


def missing_secrets(params: Sequence[Mapping[str, Any]], project: str, session: Any) -> list[str]:
    """What ``firebase deploy --non-interactive`` would stop at: each secret param whose
    latest version does not exist or is not enabled (firebase-tools ``ensureSecret``)."""
    base = os.environ.get("PACK391_SECRET_MANAGER_URL", SECRET_MANAGER).rstrip("/")
    problems: list[str] = []
    for param in params:
        if param.get("type") != "secret":
            continue
        name = str(param.get("resourceId") or param.get("name"))
        response = session.get(
            f"{base}/v1/projects/{project}/secrets/{name}/versions/latest", timeout=30
        )
        if response.status_code == 404:
            problems.append(f"{name}: no such secret (firebase functions:secrets:set {name})")
        elif response.status_code != 200:
            problems.append(f"{name}: Secret Manager answered HTTP {response.status_code}: "
                            f"{response.text[:300]}")  # fmt: skip
        elif response.json().get("state") != "ENABLED":
            problems.append(f"{name}: the latest version is {response.json().get('state')} "
                            f"(firebase functions:secrets:set {name})")  # fmt: skip
    return problems


# ------------------------------------------------------------------ the commands


def add_parsers(dsub: Any) -> None:
    """``pack391 deploy env`` and ``pack391 deploy secrets``."""
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
    from stack import hosting_config  # pack391 deploy hosting-config (issue 22)

    hosting_config.add_parser(dsub)
    secrets.add_argument(
        "--create",
        action="store_true",
        help="first upload each secret from the environment variable of its name (creating "
        "it when missing); a missing secret nothing binds (per .env.<project>) gets a "
        "placeholder",
    )


def _load(args: argparse.Namespace) -> dict[str, Any]:
    if args.manifest:
        loaded: dict[str, Any] = yaml.safe_load(args.manifest.read_text())
        return loaded
    return read_manifest()


def cmd(args: argparse.Namespace) -> int:
    """Run ``pack391 deploy env|secrets``."""
    if args.deploy_command == "hosting-config":
        from stack import hosting_config

        return hosting_config.cmd(args)
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
