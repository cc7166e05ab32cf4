# ruff: noqa: E501  (the README's command lines, verbatim)
"""The spec's world on a fresh `pack391 serve`: seven services registered, each serving a
first revision; the spec's examples, verbatim, through `pack391 call` and the CLI."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from stack.platform.procs import free_port
from stack.revisions import SERVICES, LocalRevisions
from tests.stack.serving import PACK391, start_serve


@dataclass
class World:
    process: subprocess.Popen[str]
    env: dict[str, str]
    state: dict[str, Any]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """One README line, verbatim (``./venv/bin/pack391 ...``)."""
        argv = shlex.split(command)
        assert argv[0] == "./venv/bin/pack391", command
        return subprocess.run(
            [str(PACK391), *argv[1:]], env=self.env, capture_output=True, text=True, timeout=60
        )

    def ok(self, command: str) -> Any:
        done = self.run(command)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else None

    def revisions(self) -> LocalRevisions:
        return LocalRevisions(redis.Redis.from_url(self.state["redisUrl"], decode_responses=True))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("world")
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL", "GCLOUD_PROJECT", "PACK391_DEPLOY_SERVICES")
    }
    env.update(
        PACK391_PORT=str(free_port()),
        PACK391_SANDBOX_PORT=str(free_port()),
        PACK391_STACK_STATE=str(tmp / "stack.json"),
    )
    process, _ = start_serve(env, tmp / "logs", 150)
    state = json.loads((tmp / "stack.json").read_text())
    yield World(process, env, state)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_a_fresh_stack_registers_seven_services_each_serving_a_revision(world: World) -> None:
    health = world.ok("./venv/bin/pack391 call pack391_serviceHealthCheck '{}' --role ops")
    found = {s["serviceId"]: s for s in health["services"]}
    assert set(found) == set(SERVICES) and len(SERVICES) == 7
    # each probe reaches the sandbox; "degraded" until a complete minute of metrics exists
    assert all(s["probeOk"] for s in found.values()), found
    assert {s["status"] for s in found.values()} <= {"healthy", "degraded"}, found
    revisions = world.revisions()
    for service in SERVICES:
        seen = revisions.traffic.observe(service, "")
        assert seen.shares == {f"{service}-00001": 100}
        assert seen.latest_ready == f"{service}-00001"


MARKET_ROLLOUT = [
    """./venv/bin/pack391 call pack391_updateMarketControl '{"country":"PL","config":{"launchStatus":"influencer_only"},"reason":"PL: influencers first"}'""",
    """./venv/bin/pack391 call pack391_checkMarketAccess '{"country":"PL","signup":true}' --role influencer --uid inf-1""",
    """./venv/bin/pack391 call pack391_checkMarketAccess '{"country":"PL","signup":true}' --role verified --uid alice""",
    """./venv/bin/pack391 call pack391_updateMarketControl '{"country":"PL","config":{"launchStatus":"soft_launch","trafficLimit":1000,"paymentsEnabled":true},"reason":"PL soft launch"}'""",
    """./venv/bin/pack391 call pack391_checkMarketAccess '{"country":"PL","signup":true}' --role verified --uid alice""",
    """./venv/bin/pack391 call pack391_updateMarketControl '{"country":"PL","config":{"launchStatus":"public"},"reason":"PL public"}'""",
    """./venv/bin/pack391 call pack391_checkMarketAccess '{"country":"PL","signup":true}' --role user --uid bob""",
    """./venv/bin/pack391 call pack391_getMarketControls '{"country":"PL"}' --role ops""",
]


def test_the_market_rollout_example(world: World) -> None:
    out = [world.ok(command) for command in MARKET_ROLLOUT]
    assert out[0]["market"]["launchStatus"] == "influencer_only"
    assert out[1]["signupAdmitted"] is True
    assert out[2]["signupAdmitted"] is False
    assert out[3]["market"]["launchStatus"] == "soft_launch"
    assert out[4]["signupAdmitted"] is True and out[4]["pendingUntil"]
    assert out[5]["market"]["launchStatus"] == "public"
    assert out[6]["signupAdmitted"] is True
    pl = out[7]["markets"][0]
    assert pl["launchStatus"] == "public" and pl["currentUsers"] == 3


def test_the_cli_form_with_a_faulty_revision(world: World) -> None:
    world.ok("./venv/bin/pack391 deploy validate --version v3 --env staging")
    world.ok("./venv/bin/pack391 deploy pin-traffic --env staging --services api-gateway")
    bad = world.ok(
        "./venv/bin/pack391 deploy revision api-gateway --name api-gateway-v3 --error-pct 20 "
        "--latency-ms 150"
    )
    assert bad["revisions"]["api-gateway-v3"] == {
        "errorPct": 20.0,
        "failPayouts": False,
        "latencyMs": 150.0,
        "tokenMismatch": False,
    }
    done = world.run(
        "./venv/bin/pack391 deploy start --version v3 --env staging --services api-gateway "
        "--bake-sec 60 --id-only"
    )
    assert done.returncode == 0, done.stderr
    deployment_id = done.stdout.strip()
    revisions = world.revisions()
    assert revisions.traffic.observe("api-gateway", "").shares == {
        "api-gateway-00001": 95,
        "api-gateway-v3": 5,
    }
    world.ok(f'./venv/bin/pack391 deploy rollback {deployment_id} --reason "bad smell"')
    assert revisions.traffic.observe("api-gateway", "").shares == {"api-gateway-00001": 100}


def test_the_scaling_examples(world: World) -> None:
    one = world.ok(
        """./venv/bin/pack391 call pack391_serviceHealthCheck '{"serviceId":"api-gateway"}' --role ops"""
    )
    assert one["services"][0]["serviceId"] == "api-gateway" and one["services"][0]["probeOk"]
    scaled = world.ok(
        """./venv/bin/pack391 call pack391_manualScale '{"serviceId":"api-gateway","action":"scale_to","instanceCount":8,"reason":"launch"}'"""
    )
    assert scaled["instances"] == 8 and scaled["platform"]["ok"], scaled
    # the sandbox serves api-gateway with 8 instances now: its hook was known from the start
    assert scaled["platform"]["detail"]["hook"].endswith("/__resize"), scaled
    with urllib.request.urlopen(f"{world.state['sandboxUrl']}/__health", timeout=5) as answer:
        assert json.loads(answer.read())["api-gateway"]["instances"] == 8


START = """./venv/bin/pack391 call pack391_startDeployment '{"version":"v2","environment":"production","strategy":"canary"}'"""


def test_the_start_deployment_example(world: World) -> None:
    world.ok(
        """./venv/bin/pack391 call pack391_preDeployValidator '{"version":"v2","environment":"production"}'"""
    )
    refused = world.run(START)
    assert refused.returncode == 1
    error = json.loads(refused.stderr)
    assert error["status"] == "FAILED_PRECONDITION"
    assert "pack391 deploy revision" in error["message"]
    world.ok("""./venv/bin/pack391 call pack391_pinTraffic '{"environment":"production"}'""")
    deployed = world.ok("./venv/bin/pack391 deploy revision all")
    assert [d["latest"] for d in deployed] == [f"{s}-00002" for s in SERVICES]
    started = world.ok(START)
    assert started["phase"] == "progressing" and started["trafficPercent"] == 5
    status = world.ok(
        "./venv/bin/pack391 call pack391_getDeploymentStatus "
        f"""'{{"deploymentId":"{started["deploymentId"]}"}}' --role ops"""
    )
    assert {s["service"] for s in status["services"]} == set(SERVICES)
    shares = world.revisions().traffic.observe("chat-service", "").shares
    assert shares == {"chat-service-00001": 95, "chat-service-00002": 5}
