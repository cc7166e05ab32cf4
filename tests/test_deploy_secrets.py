"""``pack391 deploy secrets --create`` and ``deploy env``'s refusal of a Redis password in
an env file: the Redis AUTH string and the webhook URL are secrets.

Secret Manager is a local REST stand-in (:class:`FakeHttpApi`) speaking the v1 calls
``firebase functions:secrets:set`` makes: ``secrets.create`` (automatic replication) and
``secrets.addVersion`` (base64 payload)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from stack.release import secret_manager, shape
from tests.fakes.http_api import FakeHttpApi, Recorded

PROJECT = "avalo-prod"
SECRETS = [
    {"name": "PACK391_BACKUP_KEY", "type": "secret"},
    {"name": "PACK391_CLOUDFLARE_ORIGIN_SECRET", "type": "secret"},
    {"name": "PACK391_REDIS_AUTH", "type": "secret"},
    {"name": "PACK391_OPS_WEBHOOK_URL", "type": "secret"},
    {"name": "REDIS_URL", "type": "string", "default": "redis://127.0.0.1:6379/0"},
]


class SecretManager:
    def __init__(self, api: FakeHttpApi) -> None:
        self.versions: dict[str, list[str]] = {}
        base = rf"/v1/projects/{PROJECT}/secrets"
        api.on("GET", rf"{base}/(?P<name>[^/:]+)", self._get)
        api.on("GET", rf"{base}/(?P<name>[^/:]+)/versions/latest", self._latest)
        api.on("POST", base, self._create)
        api.on("POST", rf"{base}/(?P<name>[^/:]+):addVersion", self._add)

    def _get(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        if m["name"] not in self.versions:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        return 200, {"name": m["name"]}

    def _latest(self, _req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        if not self.versions.get(m["name"]):
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        return 200, {"name": f"{m['name']}/versions/1", "state": "ENABLED"}

    def _create(self, req: Recorded, _m: re.Match[str]) -> tuple[int, Any]:
        name = req.query["secretId"][0]
        if name in self.versions:
            return 409, {"error": {"code": 409, "status": "ALREADY_EXISTS"}}
        assert req.body == {"replication": {"automatic": {}}}
        self.versions[name] = []
        return 200, {"name": name}

    def _add(self, req: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        data = base64.b64decode(req.body["payload"]["data"]).decode()
        if not data:  # Secret Manager refuses an empty payload
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}
        self.versions[m["name"]].append(data)
        return 200, {"name": f"{m['name']}/versions/{len(self.versions[m['name']])}"}


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretManager]:
    with FakeHttpApi() as api:
        monkeypatch.setenv("PACK391_SECRET_MANAGER_URL", api.url)
        yield SecretManager(api)


def test_create_uploads_given_values_and_placeholders_for_unbound_secrets(
    manager: SecretManager,
) -> None:
    """Redis AUTH on: its value is uploaded; the webhook off and no Cloudflare: they get the
    placeholder (declared, so the CLI wants them to exist; nothing binds them); then every
    secret exists, as `firebase deploy --non-interactive` needs."""
    session = requests.Session()
    given = {"PACK391_REDIS_AUTH": "auth-string", "PACK391_BACKUP_KEY": "a2V5"}
    values = {"PACK391_REDIS_AUTH_ENABLED": "true", "PACK391_FRONT_DOOR": "google"}
    done, problems = secret_manager.create_secrets(SECRETS, PROJECT, session, given, values)
    assert problems == []
    assert manager.versions == {
        "PACK391_BACKUP_KEY": ["a2V5"],
        "PACK391_CLOUDFLARE_ORIGIN_SECRET": [secret_manager.PLACEHOLDER],
        "PACK391_REDIS_AUTH": ["auth-string"],
        "PACK391_OPS_WEBHOOK_URL": [secret_manager.PLACEHOLDER],
    }
    assert "PACK391_REDIS_AUTH: created, value uploaded" in done
    assert secret_manager.missing_secrets(SECRETS, PROJECT, session) == []
    # run again with a new AUTH string: a new version, nothing else touched
    again, _ = secret_manager.create_secrets(
        SECRETS, PROJECT, session, {"PACK391_REDIS_AUTH": "rotated"}, values
    )
    assert again == ["PACK391_REDIS_AUTH: value uploaded"]
    assert manager.versions["PACK391_REDIS_AUTH"] == ["auth-string", "rotated"]


def test_a_secret_in_use_without_a_value_is_a_problem(manager: SecretManager) -> None:
    values = {"PACK391_REDIS_AUTH_ENABLED": "true", "PACK391_OPS_WEBHOOK_ENABLED": "true"}
    _, problems = secret_manager.create_secrets(
        SECRETS, PROJECT, requests.Session(), {"PACK391_BACKUP_KEY": "a2V5"}, values
    )
    named = sorted(p.split(":", 1)[0] for p in problems)
    assert named == ["PACK391_OPS_WEBHOOK_URL", "PACK391_REDIS_AUTH"]
    assert "PACK391_REDIS_AUTH" not in manager.versions


def test_deploy_env_refuses_a_password_in_the_redis_url() -> None:
    base = {"PACK391_VPC_CONNECTOR": "redis-connector"}
    for url in ("redis://:hunter2@10.0.0.3:6379/0", "rediss://default:hunter2@10.0.0.3:6378/0"):
        problems = shape.redis_problems({**base, "REDIS_URL": url}, PROJECT)
        assert len(problems) == 1 and "PACK391_REDIS_AUTH" in problems[0], url
    telemetry = {**base, "REDIS_URL": "redis://10.0.0.3:6379/0"}
    telemetry["PACK391_REDIS_TELEMETRY_URL"] = "redis://:pw@10.0.0.4:6379/0"
    assert len(shape.redis_problems(telemetry, PROJECT)) == 1
    clean = {**base, "REDIS_URL": "rediss://10.0.0.3:6378/0"}
    assert shape.redis_problems(clean, PROJECT) == []
    # a demo project never reaches Google: its local redis may carry one
    assert shape.redis_problems({"REDIS_URL": "redis://:pw@127.0.0.1/0"}, "demo-x") == []


def test_the_secrets_are_bound_only_where_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery with the flags on: every callable and the scale guard bind the Redis AUTH
    secret, the backup schedule does not, only the alert sender binds the webhook."""
    from shared.auth import Role
    from shared.edge import callable_options, scheduled_options
    from shared.options import redis_secrets, webhook_secrets

    assert redis_secrets() == [] and webhook_secrets() == []
    assert "secrets" not in callable_options(Role.OPS, {})
    monkeypatch.setenv("PACK391_REDIS_AUTH_ENABLED", "true")
    monkeypatch.setenv("PACK391_OPS_WEBHOOK_ENABLED", "true")
    [auth] = redis_secrets()
    assert auth.name == "PACK391_REDIS_AUTH"
    assert [s.name for s in webhook_secrets()] == ["PACK391_OPS_WEBHOOK_URL"]
    assert [s.name for s in callable_options(Role.USER, {})["secrets"]] == ["PACK391_REDIS_AUTH"]
    assert [s.name for s in scheduled_options({})["secrets"]] == ["PACK391_REDIS_AUTH"]
    assert "secrets" not in scheduled_options({}, uses_redis=False)
