"""A deploy pipeline that would get through, offline.

1. The deploy env file: the manifest is read as the Firebase CLI reads it (serving.py with
   ADMIN_PORT, ``GET /__/functions.yaml``, as tests/test_discovery.py does),
   ``pack391 deploy env`` writes ``.env.<project>`` from no variables (defaults) and from a
   sample set, and the pinned firebase-tools' own code (``loadUserEnvs`` +
   ``envWithTypes`` + ``resolveParams`` non-interactive) resolves
   every non-secret param of the manifest from it, with a value of the param's type; the
   Python SDK reads back, from what the CLI hands the functions, the value intended. Params
   come from the manifest, never a list here: a param added tomorrow is covered.
2. The workflows: valid YAML, every ``uses:`` an allowed action pinned by the full commit
   of its release tag, Node 22 or later, every ``pack391``/``firebase`` command a
   subcommand that exists (its ``--help`` run offline), workload identity federation with
   least-privilege permissions in a GitHub environment, Java 21, ``npm ci``, pip caching;
   deploy.yml's test, deploy and canary jobs with their own timeouts, the Firestore indexes
   deployed (and built) before the functions, a refreshed admin token.
3. The bootstrap path skips exactly the steps that call deployed functions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.auth import jwt

from stack import cli
from stack.release import discovery, dotenv, envfile, secret_manager, shape
from stack.sdk_private import declared_params
from tests.conftest import ROOT
from tests.fakes.http_api import FakeHttpApi, Recorded
from tests.needs import missing

WORKFLOWS = ROOT / ".github" / "workflows"
PROJECT = "demo-pack391-deploy"

NODE = shutil.which("node")
FIREBASE_TOOLS = ROOT / "tools" / "node_modules" / "firebase-tools"
FIREBASE_BIN = "./tools/node_modules/.bin/firebase"
"""How the workflows run the pinned CLI (the Node tools live in tools/, out of the
functions source)."""


@pytest.fixture
def cli_installed(request: pytest.FixtureRequest) -> None:
    """The CLI's own code runs here: node and the pinned firebase-tools (tests/needs.py)."""
    if NODE is None or not FIREBASE_TOOLS.is_dir():
        missing(
            request.config,
            "FIREBASE_CLI",
            "node and tools/node_modules/firebase-tools are needed to run the CLI's code: "
            "install Node.js 20+ and run `make setup` (npm ci in tools/)",
        )


needs_cli = pytest.mark.usefixtures("cli_installed")


@pytest.fixture(scope="module")
def manifest() -> Iterator[dict[str, Any]]:
    """The manifest exactly as the CLI reads it (tests/test_discovery.py's approach, factored
    into :func:`stack.release.discovery.read_manifest`, which ``pack391 deploy env`` runs)."""
    try:
        yield discovery.read_manifest(ROOT, sys.executable)
    except RuntimeError as exc:
        pytest.fail(str(exc))


RESOLVE_JS = r"""
const fs = require("fs");
const env = require("firebase-tools/lib/functions/env.js");
const build = require("firebase-tools/lib/deploy/functions/build.js");
const params = require("firebase-tools/lib/deploy/functions/params.js");
const [dir, projectId, paramsFile] = process.argv.slice(1);
(async () => {
  const defined = JSON.parse(fs.readFileSync(paramsFile, "utf8"));
  const raw = env.loadUserEnvs({ functionsSource: dir, projectId, projectDir: dir });
  const { paramValues } = await params.resolveParams({
    params: defined,
    firebaseConfig: { projectId },
    userEnvs: build.envWithTypes(defined, raw),
    codebase: "pack391",
    nonInteractive: true,
    isEmulator: true, // secrets: Secret Manager, checked by `pack391 deploy secrets`
  });
  const out = {};
  for (const p of defined) {
    if (p.type === "secret") continue;
    const v = paramValues[p.name];
    const typed = { string: () => v.asString(), int: () => v.asNumber(),
                    boolean: () => v.asBoolean(), list: () => v.asList() }[p.type]();
    // what the deploy sets on the functions (lib/deploy/functions/prepare.js): the file's
    // string, except lists, which get toSDK() (a JSON array)
    out[p.name] = { typed, runtime: p.type === "list" ? v.toSDK() : raw[p.name] };
  }
  process.stdout.write("RESOLVED " + JSON.stringify(out) + "\n");
})().catch((err) => { process.stderr.write(String(err.message || err) + "\n"); process.exit(1); });
"""


def cli_resolve(env_dir: Path, params: list[dict[str, Any]]) -> dict[str, Any]:
    """The pinned firebase-tools resolving ``params`` from the dotenv files of ``env_dir``,
    non-interactively: {name: {typed, runtime}}; AssertionError with the CLI's message."""
    params_file = env_dir / "params.json"
    params_file.write_text(json.dumps(params))
    done = subprocess.run(
        [str(NODE), "-e", RESOLVE_JS, str(env_dir), PROJECT, str(params_file)],
        cwd=ROOT,
        env={**os.environ, "NODE_PATH": str(FIREBASE_TOOLS.parent)},  # tools/node_modules
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESOLVED "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESOLVED "))
    return result


def non_secret(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in params if p.get("type") != "secret"]


def sample_variables(params: list[dict[str, Any]]) -> dict[str, str]:
    """A value of the right type for every non-secret param, chosen to be awkward for a
    dotenv file: quotes, '#', backslashes, newlines, spaces, JSON and comma lists."""
    out: dict[str, str] = {}
    for i, param in enumerate(non_secret(params)):
        options = ((param.get("input") or {}).get("select") or {}).get("options")
        kind = param["type"]
        if options:
            out[param["name"]] = str(options[-1]["value"])
        elif kind == "string":
            out[param["name"]] = f" {param['name']} \"q\" #not-a-comment a\\b 's'\nline2 "
        elif kind == "int":
            out[param["name"]] = str(-7 if i % 2 else 4200)
        elif kind == "boolean":
            out[param["name"]] = "TRUE" if not param.get("default") else "False"
        elif kind == "list":
            out[param["name"]] = '["a b","c#d","e\\"f","g\\\\h",""]' if i % 2 else "x,,y z"
        else:
            pytest.fail(f"{param['name']}: a param type this test does not know: {kind}")
    return out


def expected_value(param: Mapping[str, Any], variables: Mapping[str, str]) -> Any:
    """What the functions must read for ``param``: its variable, typed, else its default."""
    given = variables.get(param["name"])
    if not given:
        return param["default"]
    kind = param["type"]
    if kind == "int":
        return int(given)
    if kind == "boolean":
        return given.lower() == "true"
    if kind == "list":
        return json.loads(given) if given.startswith("[") else [x for x in given.split(",") if x]
    return given


def write_env(tmp_path: Path, params: list[dict[str, Any]], variables: dict[str, str]) -> Path:
    text = envfile.render(envfile.resolve(params, variables), PROJECT)
    path = tmp_path / f".env.{PROJECT}"
    path.write_text(text)
    return path


def runtime_values(
    params: list[dict[str, Any]], resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """What the Python SDK's param objects read from the environment the CLI deploys."""
    import main  # noqa: F401  (declares every param)

    registry = declared_params()
    out = {}
    for param in non_secret(params):
        monkeypatch.setenv(param["name"], resolved[param["name"]]["runtime"])
        out[param["name"]] = registry[param["name"]].value
    return out


# ------------------------------------------------------------------ 1. the env file


@needs_cli
@pytest.mark.parametrize("variable_set", ["none (defaults)", "sample"])
def test_every_param_resolves_from_the_generated_file_with_its_type(
    variable_set: str,
    manifest: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = discovery.manifest_params(manifest)
    assert non_secret(params), "the manifest lists no params"
    variables = {} if variable_set.startswith("none") else sample_variables(params)
    path = write_env(tmp_path, params, variables)
    resolved = cli_resolve(tmp_path, params)  # raises if the CLI would stop at a param
    assert set(resolved) == {p["name"] for p in non_secret(params)}
    assert "PACK391_BACKUP_KEY" not in path.read_text()  # a secret is never written
    python = runtime_values(params, resolved, monkeypatch)
    for param in non_secret(params):
        name, kind, typed = param["name"], param["type"], resolved[param["name"]]["typed"]
        want = expected_value(param, variables)
        if kind == "int":
            assert isinstance(typed, int) and not isinstance(typed, bool), name
        elif kind == "boolean":
            assert isinstance(typed, bool), name
        elif kind == "list":
            assert isinstance(typed, list) and all(isinstance(x, str) for x in typed), name
        else:
            assert isinstance(typed, str), name
        assert typed == want, f"{name}: the CLI reads {typed!r}, want {want!r}"
        assert python[name] == want, f"{name}: the functions read {python[name]!r}"
    # the generator's own dotenv reading is the CLI's
    parsed = dotenv.parse_dotenv(path.read_text())
    for name, value in resolved.items():
        if isinstance(value["typed"], list):
            assert json.loads(parsed[name]) == value["typed"], name
        else:
            assert parsed[name] == value["runtime"], name


@needs_cli
def test_the_cli_stops_without_the_file_and_the_generator_names_a_param_it_cannot_resolve(
    manifest: dict[str, Any], tmp_path: Path
) -> None:
    params = discovery.manifest_params(manifest)
    (tmp_path / ".env").write_text("# nothing\n")
    with pytest.raises(AssertionError, match="In non-interactive mode but have no value"):
        cli_resolve(tmp_path, params)  # defaults do not count: why the file is needed
    extra = {"name": "PACK391_NEW_SETTING", "type": "string", "label": "new"}
    with pytest.raises(envfile.ParamError) as raised:
        envfile.resolve([*params, extra], {})
    assert raised.value.problems == [
        "PACK391_NEW_SETTING: no value and no default; set the variable PACK391_NEW_SETTING"
    ]
    assert envfile.resolve([*params, extra], {"PACK391_NEW_SETTING": "x"})[-1].raw == "x"


def test_values_the_type_rejects_are_refused_naming_each_param(
    manifest: dict[str, Any],
) -> None:
    params = discovery.manifest_params(manifest)
    by_type: dict[str, str] = {}
    for param in non_secret(params):
        by_type.setdefault(param["type"], param["name"])
    assert {"string", "int", "boolean", "list"} <= set(by_type)
    bad = {
        by_type["int"]: "12.5",
        by_type["boolean"]: "yes",  # the CLI reads yes as true, the Python SDK as false
        by_type["list"]: "['a']",  # the CLI turns ' into " before JSON.parse
        "PACK391_BACKUP_KEY": "c2VjcmV0",  # a secret given as a variable
    }
    with pytest.raises(envfile.ParamError) as raised:
        envfile.resolve(params, bad)
    named = [problem.split(" ", 1)[0].rstrip(":") for problem in raised.value.problems]
    assert sorted(named) == sorted(bad)
    for value in ("1e3", " 5", "0x10", str(2**53), "", "+"):
        if value:
            with pytest.raises(envfile.ParamError, match=by_type["int"]):
                envfile.resolve(params, {by_type["int"]: value})
    expression = {"name": "PACK391_X", "type": "int", "default": "{{ params.OTHER }}"}
    with pytest.raises(envfile.ParamError, match="PACK391_X: its default is an expression"):
        envfile.resolve([expression], {})
    reserved = {"name": "FIREBASE_THING", "type": "string", "default": "a"}
    with pytest.raises(envfile.ParamError, match="FIREBASE_THING: the CLI refuses"):
        envfile.resolve([reserved], {})


def as_variable(param: Mapping[str, Any]) -> str:
    """A param's default, spelled as a repository variable."""
    default = param["default"]
    if param["type"] == "list":
        return (
            ",".join(default)
            if all("," not in x for x in default) and default
            else (json.dumps(default))
        )
    if param["type"] == "boolean":
        return "true" if default else "false"
    return str(default)


@needs_cli
def test_the_command_reads_the_manifest_itself_and_takes_github_vars_as_json(
    manifest: dict[str, Any], tmp_path: Path
) -> None:
    """``pack391 deploy env`` as the workflow runs it: the manifest read by the command
    itself, variables from ``toJSON(vars)`` overridden by own-name environment variables,
    and the discovery run again with the file's values, as firebase deploy will run it."""
    params = discovery.manifest_params(manifest)
    given = {p["name"]: as_variable(p) for p in non_secret(params) if p.get("default") != ""}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACK391_")}
    env.pop("REDIS_URL", None)
    names = sorted(given)
    env["REPO_VARS"] = json.dumps(
        {**{n: given[n] for n in names[::2]}, "FIREBASE_PROJECT": PROJECT, names[1]: "stale"}
    )
    env.update({n: given[n] for n in names[1::2]})  # own-name variables win over the JSON
    done = subprocess.run(
        [*pack391(), "deploy", "env", "--project", PROJECT, "--out-dir", str(tmp_path),
         "--vars-json-env", "REPO_VARS"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = (tmp_path / f".env.{PROJECT}").read_text()
    assert written == envfile.render(envfile.resolve(params, given), PROJECT)
    for name in names:
        assert f"{name}: variable" in done.stdout
    (tmp_path / f".env.{PROJECT}").unlink()
    # a value the manifest's types accept but the deploy's discovery refuses
    env["PACK391_REGION"] = "Mars Base 1"
    done = subprocess.run(
        [*pack391(), "deploy", "env", "--project", PROJECT, "--out-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "discovery fails with these values" in done.stderr
    assert "PACK391_REGION='Mars Base 1'" in done.stderr
    assert not (tmp_path / f".env.{PROJECT}").exists()
    bad_int = next(p["name"] for p in non_secret(params) if p["type"] == "int")
    env[bad_int] = "many"
    done = subprocess.run(
        [*pack391(), "deploy", "env", "--project", PROJECT, "--out-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"{bad_int} (int, from its variable): not an integer: 'many'" in done.stderr
    assert not (tmp_path / f".env.{PROJECT}").exists()


@needs_cli
def test_the_python_dotenv_reader_is_the_clis(tmp_path: Path) -> None:
    tricky = [
        "plain", "", " lead and trail ", 'a "b" c', "it's", "#hash", "a # b", "back\\slash",
        "end\\", "\\\"", "two\nlines", "tab\there", "cr\rlf", "[1,2]", '["a","b"]', "x=y",
        "ünï©ødé", "$HOME", "'single'", '"double"',
    ]  # fmt: skip
    params = [
        {"name": f"K{i}", "type": "string", "default": value} for i, value in enumerate(tricky)
    ]
    path = write_env(tmp_path, params, {})
    resolved = cli_resolve(tmp_path, params)
    assert [resolved[f"K{i}"]["typed"] for i in range(len(tricky))] == tricky
    assert dotenv.parse_dotenv(path.read_text()) == {f"K{i}": v for i, v in enumerate(tricky)}


def test_the_committed_template_lists_every_param_of_the_manifest(
    manifest: dict[str, Any],
) -> None:
    params = discovery.manifest_params(manifest)
    text = (ROOT / ".env.example").read_text()
    assert text == envfile.template(params), (
        "regenerate: ./venv/bin/pack391 deploy env --example > .env.example"
    )
    written = dotenv.parse_dotenv(text)
    assert set(written) == {p["name"] for p in non_secret(params) if "default" in p}
    assert not any(p["name"] in written for p in params if p["type"] == "secret")


def test_missing_secrets_are_named_with_the_command_that_sets_them(
    manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    params = discovery.manifest_params(manifest)
    secrets = [p["name"] for p in params if p["type"] == "secret"]
    assert "PACK391_BACKUP_KEY" in secrets
    with FakeHttpApi() as api:
        monkeypatch.setenv("PACK391_SECRET_MANAGER_URL", api.url)
        path = rf"/v1/projects/{PROJECT}/secrets/(?P<name>[^/]+)/versions/latest"
        api.reply("GET", path, 404, {"error": {"code": 404}})
        problems = secret_manager.missing_secrets(params, PROJECT, requests.Session())
        assert problems == [
            f"{n}: no such secret (firebase functions:secrets:set {n})" for n in secrets
        ]
        api.reply("GET", path, 200, {"name": "v/1", "state": "DISABLED"})
        assert "DISABLED" in secret_manager.missing_secrets(params, PROJECT, requests.Session())[0]
        api.reply("GET", path, 200, {"name": "v/1", "state": "ENABLED"})
        assert secret_manager.missing_secrets(params, PROJECT, requests.Session()) == []


def test_the_token_signs_through_iam_under_workload_identity_federation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """google-github-actions/auth writes an external_account file (no key): firebase-admin
    cannot sign with it and, without a service account id, asks the metadata server, which a
    GitHub runner has not. The token command names the impersonated account, so the custom
    token is signed by IAM signBlob as that account."""
    from google.auth import iam

    account = "deployer@demo-pack391-test.iam.gserviceaccount.com"
    credentials = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/"
        "github/providers/repo",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/"
        f"projects/-/serviceAccounts/{account}:generateAccessToken",
        "credential_source": {
            "url": "http://127.0.0.1:9/token?audience=x",
            "headers": {"Authorization": "Bearer gh"},
            "format": {"type": "json", "subject_token_field_name": "value"},
        },
    }
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(credentials))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST")
    monkeypatch.delenv("PACK391_DEPLOY_SERVICE_ACCOUNT", raising=False)
    signed_as: list[str] = []

    def sign(self: Any, message: bytes) -> bytes:
        signed_as.append(self._service_account_email)
        return b"iam-signature"

    monkeypatch.setattr(iam.Signer, "sign", sign)
    with FakeHttpApi() as api:

        def exchange(req: Recorded, _m: re.Match[str]) -> tuple[int, Any]:
            return 200, {"idToken": "the-id-token", "refreshToken": "r", "expiresIn": "3600"}

        api.on("POST", r"/v1/accounts:signInWithCustomToken", exchange)
        monkeypatch.setenv("PACK391_IDENTITY_TOOLKIT_URL", api.url)
        code = cli.main(["deploy", "token", "--uid", "deploy-bot", "--api-key", "K"])
        sent = api.received("POST")[0]
    assert code == 0 and capsys.readouterr().out.strip() == "the-id-token"
    assert signed_as == [account]
    claims = jwt.decode(sent.body["token"], verify=False)  # type: ignore[no-untyped-call]
    assert claims["iss"] == account and claims["uid"] == "deploy-bot"
    assert claims["claims"] == {"admin": True}


# ------------------------------------------------------------------ the deploy's shape


def test_the_pre_deploy_check_refuses_a_deploy_that_leaves_the_functions_open(
    manifest: dict[str, Any],
) -> None:
    """``pack391 deploy env`` checks the manifest discovery produced with the file's values
    (``shape_problems``): a ceiling on every function, a front door a deployed function
    accepts, and in load-balancer mode no callable reachable around the balancer."""

    def door(mode: str) -> dict[str, str]:
        return {"PACK391_FRONT_DOOR": mode}

    callables = sorted(n for n, e in manifest["endpoints"].items() if "callableTrigger" in e)
    assert len(callables) > 30
    assert shape.shape_problems(manifest, door("google")) == []
    # discovered as firebase deploy runs it with load-balancer in .env.<project>: passes
    behind = discovery.read_manifest(env_file_values=door("load-balancer"))
    assert shape.shape_problems(behind, door("load-balancer")) == []
    # the same mode with callables still public (discovery saw another front door): refused
    problems = shape.shape_problems(manifest, door("load-balancer"))
    assert [p.split(":", 1)[0] for p in problems] == callables
    assert all("around the load balancer" in p and "ALLOW_INTERNAL_AND_GCLB" in p for p in problems)
    problems = shape.shape_problems(manifest, door("cloudflare"))
    assert [p.split(":", 1)[0] for p in problems] == callables
    assert all("PACK391_CLOUDFLARE_ORIGIN_SECRET" in p for p in problems)
    assert shape.shape_problems(manifest, door("direct"))[0].startswith(
        "PACK391_FRONT_DOOR=direct: a deployed function refuses every call"
    )
    assert "not one of" in shape.shape_problems(manifest, door("googel"))[0]
    uncapped = copy.deepcopy(manifest)
    uncapped["endpoints"]["pack391_detectDDoS"]["maxInstances"] = None
    assert shape.shape_problems(uncapped, door("google")) == [
        "pack391_detectDDoS: no maxInstances: nothing caps what its traffic costs"
    ]


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        # a demo project never reaches Google: the emulators' loopback Redis is fine
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, ["demo"]),
        # a real project with the defaults: every rate-limit call would fail, silently
        ({}, ["REDIS_URL=(unset)", "PACK391_VPC_CONNECTOR is empty"]),
        (
            {"REDIS_URL": "redis://127.0.0.1:6379/0", "PACK391_VPC_CONNECTOR": "c"},
            ["REDIS_URL=redis://127.0.0.1:6379/0"],
        ),
        (
            {"REDIS_URL": "rediss://:pw@localhost:6378/0", "PACK391_VPC_CONNECTOR": "c"},
            ["REDIS_URL=rediss://", "REDIS_URL (or PACK391_REDIS_TELEMETRY_URL) carries"],
        ),
        ({"REDIS_URL": "redis://10.0.0.3:6379/0"}, ["PACK391_VPC_CONNECTOR is empty"]),
        ({"REDIS_URL": "redis://10.0.0.3:6379/0", "PACK391_VPC_CONNECTOR": "pack391-redis"}, []),
    ],
)
def test_a_real_project_refuses_a_loopback_redis_or_no_connector(
    manifest: dict[str, Any], values: dict[str, str], problems: list[str]
) -> None:
    """A missing REDIS_URL or VPC connector once silently deployed with loopback Redis
    (on Cloud Run, the container itself)."""
    demo = problems == ["demo"]
    found = shape.shape_problems(
        manifest, {"PACK391_FRONT_DOOR": "google", **values}, PROJECT if demo else "avalo-prod"
    )
    if demo:
        assert found == []
        return
    assert len(found) == len(problems), found
    for line, start in zip(found, problems, strict=True):
        assert line.startswith(start), line


def test_a_real_project_needs_canary_services_except_on_a_bootstrap(
    manifest: dict[str, Any],
) -> None:
    """With PACK391_DEPLOY_SERVICES empty the canary once had nothing to move while
    firebase deploy put every new revision at 100 %. The refusal names the derived list:
    the callables' Cloud Run services (lower case, _ as -)."""
    derived = shape.derived_deploy_services(manifest)
    assert "pack391-checkratelimit" in derived and "pack391-getopsdashboard" in derived
    assert "pack391-monitordeployment" not in derived  # scheduled: no user traffic to judge
    assert derived == sorted(derived)
    (problem,) = shape.deploy_services_problems(manifest, {}, "avalo-prod", False)
    assert problem.startswith("PACK391_DEPLOY_SERVICES is empty") and ",".join(derived) in problem
    assert shape.deploy_services_problems(manifest, {}, "avalo-prod", True) == []
    assert shape.deploy_services_problems(manifest, {}, PROJECT, False) == []  # demo
    named = {"PACK391_DEPLOY_SERVICES": "api-gateway,pack391-checkratelimit"}
    assert shape.deploy_services_problems(manifest, named, "avalo-prod", False) == []


def test_the_command_refuses_direct_before_the_deploy(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACK391_")}
    env.pop("REDIS_URL", None)
    env["PACK391_FRONT_DOOR"] = "direct"
    done = subprocess.run(
        [*pack391(), "deploy", "env", "--project", PROJECT, "--out-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "PACK391_FRONT_DOOR=direct: a deployed function refuses every call" in done.stderr
    assert "nothing written" in done.stderr
    assert not (tmp_path / f".env.{PROJECT}").exists()


# ------------------------------------------------------------------ 2. the workflows

ACTIONS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/setup-java": ("b6effb05e454b25005698d916606bdc6ffcbf961", "v5.7.0"),
    "actions/setup-node": ("820762786026740c76f36085b0efc47a31fe5020", "v7.0.0"),
    "google-github-actions/auth": ("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
}
"""The actions the workflows may use: the commit of each release tag, read with git in a
clone of the action's repository (``git rev-parse TAG^{commit}``)."""

TRUST_CONDITION = (
    "assertion.repository=='OWNER/REPO' && assertion.ref=='refs/heads/main' && "
    "assertion.environment=='production'"
)
"""The workload identity provider's attribute condition deploy.yml documents."""

CALLS_FUNCTIONS = {"validate", "pin-traffic", "start", "wait", "status", "rollback", "control"}
"""``pack391 deploy`` subcommands that call deployed pack391_* functions."""


def pack391() -> list[str]:
    script = ROOT / "venv" / "bin" / "pack391"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stack.cli"]


def load(name: str) -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return workflow


def job_steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(job, step) of every job, jobs in the order of their ``needs`` chain."""
    jobs: dict[str, Any] = workflow["jobs"]
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [n for n, j in jobs.items() if n not in order
                 and set(_needs(j)) <= set(order)]  # fmt: skip
        assert ready, f"the jobs' needs form a cycle: {list(jobs)}"
        order.append(ready[0])
    return [(name, step) for name in order for step in jobs[name]["steps"]]


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def steps_of(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for _, step in job_steps(workflow)]


def commands(step: dict[str, Any], program: str) -> list[list[str]]:
    """Each invocation of ``program`` in the step's script, as argv (variables as X)."""
    out = []
    for line in step.get("run", "").splitlines():
        for match in re.finditer(rf"{re.escape(program)} ([^)|;&>]*)", line):
            words = match.group(1).replace('"$', '"X').replace("$(", "")
            out.append(shlex.split(words))
    return out


def firebase_deploys(steps: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(step index, the --only value) of every ``firebase deploy``, in order."""
    out = []
    for i, step in enumerate(steps):
        for argv in commands(step, FIREBASE_BIN):
            if argv[0] == "deploy":
                out.append((i, argv[argv.index("--only") + 1]))
    return out


def deploy_calls(step: dict[str, Any]) -> set[str]:
    return {a[1] for a in commands(step, "./venv/bin/pack391") if a[0] == "deploy"}


@pytest.mark.parametrize("name", ["deploy.yml", "ci.yml"])
def test_actions_are_pinned_by_commit_on_node_22_java_21_npm_ci_and_pip_cache(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    pins = re.findall(r"^\s*-?\s*uses:\s*(\S+)\s*(.*)$", text, flags=re.M)
    assert pins
    for uses, comment in pins:
        action, _, ref = uses.partition("@")
        assert action in ACTIONS, f"{uses}: not an allowed action"
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{uses}: not pinned by a full commit"
        assert (ref, comment) == (ACTIONS[action][0], f"# {ACTIONS[action][1]}"), uses
    workflow = load(name)
    steps = steps_of(workflow)
    with_of = [(s["uses"].split("@")[0], s.get("with", {})) for s in steps if "uses" in s]
    nodes = [w["node-version"] for a, w in with_of if a == "actions/setup-node"]
    assert nodes and all(int(str(v).split(".")[0]) >= 22 for v in nodes), nodes
    javas = [w for a, w in with_of if a == "actions/setup-java"]
    assert javas and all(w == {"distribution": "temurin", "java-version": "21"} for w in javas)
    for job_name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"{job_name}: no timeout"
        runs = [s.get("run", "") for s in job["steps"]]
        if "make test" not in runs:
            continue
        (python,) = [s["with"] for s in job["steps"]
                     if s.get("uses", "").startswith("actions/setup-python")]  # fmt: skip
        assert python["cache"] == "pip"
        assert set(python["cache-dependency-path"].split()) == {
            "requirements.txt",
            "requirements-dev.txt",
        }
        assert runs.index("npm ci --prefix tools") < runs.index("make test")
    assert "firebase-tools@" not in text  # the pinned one only
    # checkouts leave no token in .git/config for later steps
    assert all(w.get("persist-credentials") is False for a, w in with_of if a.endswith("checkout"))


def test_the_deploy_workflow_has_test_deploy_and_canary_jobs_each_with_its_timeout() -> None:
    workflow = load("deploy.yml")
    jobs = workflow["jobs"]
    assert list(jobs) == ["test", "deploy", "canary"]
    assert _needs(jobs["deploy"]) == ["test"] and _needs(jobs["canary"]) == ["deploy"]
    timeouts = {name: job["timeout-minutes"] for name, job in jobs.items()}
    assert all(10 <= t <= 90 for t in timeouts.values()), timeouts
    # the canary's wait outlives its own --timeout, inside the job's
    (wait,) = [s for s in jobs["canary"]["steps"] if "wait" in deploy_calls(s)]
    argv = commands(wait, "./venv/bin/pack391")[0]
    wait_sec = float(argv[argv.index("--timeout") + 1])
    assert wait_sec / 60 < wait["timeout-minutes"] < timeouts["canary"]
    # what each job does
    calls = {n: set().union(*(deploy_calls(s) for s in j["steps"])) for n, j in jobs.items()}
    assert calls["test"] == set()
    assert {"env", "secrets", "token", "validate", "pin-traffic", "hosting-config", "start"} <= (
        calls["deploy"]
    )
    assert calls["canary"] == {"token", "wait", "status"}
    assert [only for _, only in firebase_deploys(jobs["deploy"]["steps"])] == [
        "firestore:indexes",
        "functions:pack391",
        "hosting:ops",
    ]
    assert [s.get("run") for s in jobs["test"]["steps"]].count("make test") == 1
    # the canary job installs the runtime lock only, hash-checked
    (install,) = [s for s in jobs["canary"]["steps"] if "requirements" in s.get("run", "")]
    assert "--require-hashes -r requirements.txt" in install["run"]
    assert "--no-deps -e ." in install["run"]


def test_the_canary_flow_runs_in_order_indexes_before_functions() -> None:
    """deploy env, deploy secrets, validate, pin-traffic, the indexes (built before going
    on), the functions, start, wait; Hosting after the functions, configured before."""
    steps = steps_of(load("deploy.yml"))

    def at(call: str) -> int:
        return next(i for i, s in enumerate(steps) if call in deploy_calls(s))

    deploys = dict((only, i) for i, only in firebase_deploys(steps))
    (index_wait,) = [i for i, s in enumerate(steps) if "state=CREATING" in s.get("run", "")]
    order = [at("env"), at("secrets"), at("validate"), at("pin-traffic"),
             deploys["firestore:indexes"], index_wait, deploys["functions:pack391"],
             at("start"), at("wait")]  # fmt: skip
    assert order == sorted(order) and len(set(order)) == len(order), order
    assert at("env") < at("hosting-config") < deploys["hosting:ops"]
    assert deploys["functions:pack391"] < deploys["hosting:ops"]
    # the start is the very next step after the functions deploy (they serve the new code at
    # 100 % until it), in the same job, before Hosting
    assert at("start") == deploys["functions:pack391"] + 1 < deploys["hosting:ops"]
    jobs = load("deploy.yml")["jobs"]
    canary_env = jobs["canary"]["env"]["DEPLOYMENT_ID"]
    assert canary_env == "${{ needs.deploy.outputs.deployment_id }}"
    assert jobs["deploy"]["outputs"]["deployment_id"] == "${{ steps.start.outputs.deployment_id }}"
    # the index wait loops until nothing is CREATING, bounded by its own timeout
    wait = steps[index_wait]
    assert "gcloud firestore indexes composite list" in wait["run"]
    assert isinstance(wait.get("timeout-minutes"), int)
    # the indexes deploy never deletes an index (no --force)
    (indexes,) = [a for s in steps for a in commands(s, FIREBASE_BIN) if "firestore:indexes" in a]
    assert "--force" not in indexes and "--non-interactive" in indexes


def test_every_job_that_calls_functions_refreshes_its_token() -> None:
    jobs = load("deploy.yml")["jobs"]
    for name, job in jobs.items():
        calls = set().union(*(deploy_calls(s) for s in job["steps"]))
        if not calls & CALLS_FUNCTIONS:
            continue
        env = job.get("env", {})
        assert env.get("PACK391_TOKEN_UID") == "deploy-bot", name
        assert env.get("FIREBASE_WEB_API_KEY") == "${{ secrets.FIREBASE_WEB_API_KEY }}", name
        assert env.get("PACK391_DEPLOY_SERVICE_ACCOUNT") == "${{ vars.GCP_SERVICE_ACCOUNT }}"
        token_at = next(i for i, s in enumerate(job["steps"]) if "token" in deploy_calls(s))
        (token,) = commands(job["steps"][token_at], "./venv/bin/pack391")
        assert (
            token[token.index("--uid") + 1] == "XPACK391_TOKEN_UID"
            and "$PACK391_TOKEN_UID" in (job["steps"][token_at]["run"])
        )
        first_call = min(i for i, s in enumerate(job["steps"]) if deploy_calls(s) & CALLS_FUNCTIONS)
        assert token_at < first_call, name


def test_ci_and_deploy_permissions_are_least_privilege_and_the_trust_is_main_in_production() -> (
    None
):
    ci, deploy = load("ci.yml"), load("deploy.yml")
    assert ci["permissions"] == {"contents": "read"}
    assert ci["jobs"]["test"]["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"contents": "read"}
    assert deploy["jobs"]["test"]["permissions"] == {"contents": "read"}
    assert "environment" not in deploy["jobs"]["test"]
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "credentials_json" not in text and "GCP_SA_KEY" not in text  # no long-lived key
    assert TRUST_CONDITION in text  # the provider's condition, documented
    for name in ("deploy", "canary"):
        job = deploy["jobs"][name]
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        # the OIDC subject carries the environment the provider's condition requires
        assert job["environment"] == "${{ github.event.inputs.environment || 'production' }}"
        steps = job["steps"]
        (auth,) = [s for s in steps if s.get("uses", "").startswith("google-github-actions/auth")]
        assert auth["with"] == {
            "workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
            "service_account": "${{ vars.GCP_SERVICE_ACCOUNT }}",
        }
        needs_google = [
            i for i, s in enumerate(steps)
            if deploy_calls(s) or FIREBASE_BIN in s.get("run", "") or "gcloud " in s.get("run", "")
        ]  # fmt: skip
        assert needs_google and steps.index(auth) < min(needs_google)
    inputs = deploy[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
    assert inputs["environment"]["default"] == "production"


def test_every_command_of_the_deploy_workflow_exists() -> None:
    steps = steps_of(load("deploy.yml"))
    parser = cli.build_parser()
    seen = set()
    for step in steps:
        for argv in commands(step, "./venv/bin/pack391"):
            parsed = parser.parse_args(argv)  # exits (fails the test) on a bad command
            assert parsed.command == "deploy"
            seen.add(argv[1])
    assert {"env", "secrets", "token", "validate", "pin-traffic", "start", "wait"} <= seen
    # each subcommand's help from the parser the script builds (in this process: a
    # subprocess each cost about a CPU-second on the loaded suite), and the installed
    # script once, as the workflow runs it
    for sub in sorted(seen):
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), pytest.raises(SystemExit) as exited:
            cli.build_parser("deploy").parse_args(["deploy", sub, "--help"])
        assert exited.value.code == 0 and f"pack391 deploy {sub}" in shown.getvalue()
    done = subprocess.run(
        [*pack391(), "deploy", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "pack391 deploy" in done.stdout, done.stderr
    assert all(sub in done.stdout for sub in seen), done.stdout
    deploys = [argv for s in steps for argv in commands(s, FIREBASE_BIN)]
    assert len(deploys) == 3
    for deploy in deploys:
        assert deploy[0] == "deploy"
        assert "--non-interactive" in deploy and "--only" in deploy
    assert json.loads((ROOT / "firebase.json").read_text())["functions"][0]["codebase"] == (
        "pack391"
    )
    assert json.loads((ROOT / "firebase.json").read_text())["hosting"]["target"] == "ops"
    if NODE is None or not FIREBASE_TOOLS.is_dir():
        missing(None, "FIREBASE_CLI", "npm ci: the pinned firebase-tools is not installed")
    pinned = json.loads((ROOT / "tools" / "package.json").read_text())["devDependencies"][
        "firebase-tools"
    ]
    installed = json.loads((FIREBASE_TOOLS / "package.json").read_text())["version"]
    assert installed == pinned
    helps = {}
    for command in ([], ["deploy"]):
        done = subprocess.run(
            [str(ROOT / FIREBASE_BIN), *command, "--help"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        helps[tuple(command)] = done.stdout
    assert "Usage: firebase deploy" in helps[("deploy",)]
    for deploy in deploys:
        for option in (a for a in deploy if a.startswith("--")):
            assert re.search(rf"\s{option}\b", helps[("deploy",)] + helps[()]), option


def test_the_env_file_is_written_from_all_repository_variables_before_the_deploy() -> None:
    steps = steps_of(load("deploy.yml"))
    names = [s.get("name", s.get("uses", "")) for s in steps]
    (env_step,) = [s for s in steps if any(a[:2] == ["deploy", "env"] for a in
                                           commands(s, "./venv/bin/pack391"))]  # fmt: skip
    assert env_step["env"] == {"PACK391_REPOSITORY_VARS": "${{ toJSON(vars) }}"}
    assert "--vars-json-env PACK391_REPOSITORY_VARS" in env_step["run"]
    (secrets_step,) = [s for s in steps if "pack391 deploy secrets" in s.get("run", "")]
    first_deploy = min(i for i, _ in firebase_deploys(steps))
    assert steps.index(env_step) < first_deploy
    assert steps.index(secrets_step) < first_deploy
    assert names.index("Tests") < steps.index(env_step)


# ------------------------------------------------------------------ 3. bootstrap


def runs(job: dict[str, Any], step: dict[str, Any], bootstrap: bool) -> bool:
    """Whether the step runs on the success path (the ``if:`` forms the workflow uses)."""
    job_if = str(job.get("if", "")).strip()
    if job_if:
        if job_if != "${{ !(github.event_name == 'workflow_dispatch' && inputs.bootstrap) }}":
            pytest.fail(f"a job condition this test does not know: {job_if}")
        if bootstrap:
            return False
    condition = str(step.get("if", "")).strip()
    if not condition:
        return True
    if "failure()" in condition:
        return False
    flag = "true" if bootstrap else "false"
    if condition == "env.BOOTSTRAP == 'true'":
        return flag == "true"
    if condition == "env.BOOTSTRAP != 'true'":
        return flag != "true"
    pytest.fail(f"{step.get('name')}: a condition this test does not know: {condition}")


def test_bootstrap_skips_exactly_the_steps_that_need_deployed_functions() -> None:
    workflow = load("deploy.yml")
    # the provider admits refs/heads/main only: a tag-triggered run could not authenticate
    assert set(workflow[True]) == {"workflow_dispatch"}
    dispatch = workflow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
    assert dispatch["bootstrap"] == {
        "description": dispatch["bootstrap"]["description"],
        "type": "boolean",
        "default": False,
        "required": False,
    }
    assert dispatch["environment"]["required"] is True
    bootstrap_env = workflow["env"]["BOOTSTRAP"]
    assert "inputs.bootstrap" in bootstrap_env and "workflow_dispatch" in bootstrap_env
    # only a bootstrap's env file may leave the canary services empty
    (env_step,) = [s for s in steps_of(workflow) if "env" in deploy_calls(s)]
    bootstrap_branch = env_step["run"].split("else")[0]
    assert 'if [ "$BOOTSTRAP" = "true" ]' in bootstrap_branch
    assert (
        "--bootstrap" in bootstrap_branch and "--bootstrap" not in env_step["run"].split("else")[1]
    )
    jobs = workflow["jobs"]
    pairs = job_steps(workflow)
    steps = [s for _, s in pairs]
    deploy_at = dict((only, i) for i, only in firebase_deploys(steps))["functions:pack391"]
    deploy_step = steps[deploy_at]

    def calls(step: dict[str, Any]) -> set[str]:
        return deploy_calls(step) & CALLS_FUNCTIONS

    normal = [s for j, s in pairs if runs(jobs[j], s, bootstrap=False)]
    first = [s for j, s in pairs if runs(jobs[j], s, bootstrap=True)]
    skipped = [s for s in normal if s not in first]
    assert {c for s in skipped for c in calls(s)} == {"validate", "pin-traffic", "start", "wait"}
    # nothing else is skipped but the canary job's own setup (checkout, venv, credentials,
    # token), which only serves the wait
    canary = jobs["canary"]["steps"]
    assert all(calls(s) or s in canary for s in skipped)
    assert [s for s in canary if runs(jobs["canary"], s, bootstrap=True)] == []
    assert deploy_step in first and deploy_step in normal
    # before the deploy, a bootstrap run calls a function only to refuse when it answers
    (guard,) = [s for s in first[: first.index(deploy_step)] if calls(s)]
    assert guard["run"].lstrip().startswith("if ./venv/bin/pack391 deploy status")
    assert "exit 1" in guard["run"]
    # after it, the deployed guard answers and the run records it
    (record,) = [s for s in first if steps.index(s) > deploy_at and calls(s)]
    assert "GITHUB_STEP_SUMMARY" in record["run"] and "canary machinery" in record["run"]
    # the normal path keeps the canary order
    order = [next(i for i, s in enumerate(normal) if c in calls(s))
             for c in ("validate", "pin-traffic")]  # fmt: skip
    order += [normal.index(deploy_step)]
    order += [next(i for i, s in enumerate(normal) if c in calls(s)) for c in ("start", "wait")]
    assert order == sorted(order)
    assert not [s for s in normal if s is guard or s is record]
