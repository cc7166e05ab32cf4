"""The error budget gate: the ``deploy_freeze`` action of the budgets refuses a release
while it is enforced for the platform or one of the release's services.

The verdict as literal tables (pure), then ``pack391_preDeployValidator`` end to end on
the emulator, the evaluator's state document written as the evaluator writes it
(``pack391_slo/current``, :class:`shared.models.slo.SloStateDoc`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.deploy_guard.budget_gate import snapshot_of_state
from functions.deploy_guard.policy.gates import error_budget_gate, release_scopes
from shared import collections
from shared import thresholds as t
from shared.firestore import get_db
from shared.models.deploy import GateStatus
from shared.models.scaling import ServiceDoc, ServiceState
from shared.models.slo import ActionMode, ActionsSnapshot, ActionState, SloAction, SloStateDoc
from shared.ratelimit.keys import minute_of
from shared.redis import get_redis
from shared.slo.actions import read_shadow
from tests.conftest import Backends, Caller
from tests.deploy_guard.test_deploy_functions import ENV
from tests.scaling.helpers import service_config

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PASS, FAIL, SKIPPED = GateStatus.PASS, GateStatus.FAIL, GateStatus.SKIPPED
ENF, SHA, OFF = ActionMode.ENFORCE, ActionMode.SHADOW, ActionMode.OFF


def freeze_state(
    mode: ActionMode, scopes: tuple[str, ...], *, wanted: bool = True, lifted: bool = False
) -> ActionState:
    return ActionState(
        action=SloAction.DEPLOY_FREEZE,
        mode=mode,
        wanted=wanted,
        enforced=wanted and mode is ActionMode.ENFORCE and not lifted,
        since=NOW - timedelta(minutes=20) if wanted else None,
        reason="availability burns at 6.4x over 6 h and 30 min" if wanted else "",
        scopes=list(scopes),
        lifted_until=NOW + timedelta(hours=1) if lifted else None,
        lifted_by="ops-1" if lifted else None,
    )


def freeze(
    mode: ActionMode,
    *scopes: str,
    wanted: bool = True,
    lifted: bool = False,
    at: datetime = NOW,
) -> ActionsSnapshot:
    state = freeze_state(mode, scopes, wanted=wanted, lifted=lifted)
    return ActionsSnapshot(at=at, actions={SloAction.DEPLOY_FREEZE: state})


def registry(*pairs: tuple[str, str]) -> list[ServiceDoc]:
    """Scaling registry entries: (service id, Cloud Run service)."""
    return [
        ServiceDoc(
            config=service_config(service_id=sid, cloud_run_service=run),
            state=ServiceState(current_instances=2),
        )
        for sid, run in pairs
    ]


# ------------------------------------------------------------------ pure tables


@pytest.mark.parametrize(
    ("names", "known", "scopes"),
    [
        ([], [], []),
        (["api"], [], ["service:api"]),
        (["api"], [("api-gateway", "api")], ["service:api", "service:api-gateway"]),
        (["api", "chat"], [("chat-service", "chat"), ("pay", "payments")],
         ["service:api", "service:chat", "service:chat-service"]),
    ],
)  # fmt: skip
def test_release_scopes(names: list[str], known: list[tuple[str, str]], scopes: list[str]) -> None:
    assert release_scopes(names, registry(*known)) == scopes


API = ["service:api", "service:api-gateway"]

# snapshot, release scopes -> status, frozen by, would refuse
GATE_TABLE: list[tuple[ActionsSnapshot | None, list[str], GateStatus, list[str] | None, bool]] = [
    (None, API, SKIPPED, None, False),
    (ActionsSnapshot(at=NOW), API, PASS, None, False),  # no freeze decided at all
    (freeze(ENF, "platform"), API, FAIL, ["platform"], False),
    (freeze(ENF, "platform"), [], FAIL, ["platform"], False),  # holds every release
    (freeze(ENF, "service:api-gateway"), API, FAIL, ["service:api-gateway"], False),
    (freeze(ENF, "service:api"), API, FAIL, ["service:api"], False),
    (freeze(ENF, "service:chat", "platform"), API, FAIL, ["platform"], False),
    (freeze(ENF, "service:chat"), API, PASS, None, False),  # another service burns
    (freeze(ENF, "class:ai"), API, PASS, None, False),  # not a deploy's scope
    (freeze(ENF, "platform", wanted=False), API, PASS, None, False),  # burn over
    (freeze(ENF, "platform", lifted=True), API, PASS, None, False),  # an ops lift
    (freeze(SHA, "platform"), API, PASS, None, True),
    (freeze(SHA, "service:api-gateway"), API, PASS, None, True),
    (freeze(SHA, "service:chat"), API, PASS, None, False),
    (freeze(SHA, "platform", wanted=False), API, PASS, None, False),
    (freeze(OFF, "platform"), API, PASS, None, False),
    # the evaluator stopped: its last state is older than the snapshot's TTL
    (freeze(ENF, "platform", at=NOW - timedelta(seconds=t.SLO_ACTIONS_TTL_SEC + 1)), API,
     SKIPPED, None, False),
    (freeze(ENF, "platform", at=NOW - timedelta(seconds=t.SLO_ACTIONS_TTL_SEC)), API,
     FAIL, ["platform"], False),
]  # fmt: skip


@pytest.mark.parametrize(("snapshot", "scopes", "status", "frozen_by", "would"), GATE_TABLE)
def test_error_budget_gate(
    snapshot: ActionsSnapshot | None,
    scopes: list[str],
    status: GateStatus,
    frozen_by: list[str] | None,
    would: bool,
) -> None:
    gate = error_budget_gate(snapshot, ["api"], scopes, NOW)
    assert gate.name == "error_budget"
    assert gate.status is status
    assert gate.evidence.get("frozenBy") == frozen_by
    assert bool(gate.evidence.get("wouldRefuse")) is would
    if would:
        assert gate.evidence["detail"].startswith("would have refused")
    if status is not SKIPPED:
        assert "platform" in gate.evidence["releaseScopes"]
        assert gate.evidence["services"] == ["api"]


def test_a_refusal_says_why_and_a_lift_says_until_when() -> None:
    refused = error_budget_gate(freeze(ENF, "platform"), ["api"], API, NOW)
    assert refused.evidence["reason"] == "availability burns at 6.4x over 6 h and 30 min"
    assert (refused.evidence["mode"], refused.evidence["enforced"]) == ("enforce", True)
    lifted = error_budget_gate(freeze(ENF, "platform", lifted=True), ["api"], API, NOW)
    assert lifted.evidence["liftedUntil"] == (NOW + timedelta(hours=1)).isoformat()


def test_the_state_document_reads_as_the_snapshot_in_either_shape() -> None:
    snapshot = freeze(ENF, "platform")
    state = SloStateDoc(at=NOW, minute=NOW, actions=snapshot.actions)
    assert snapshot_of_state(state.to_doc()) == snapshot  # the evaluator's document
    nested = {"actions": snapshot.model_dump(mode="json", by_alias=True)}  # {at, actions}
    assert snapshot_of_state(nested) == snapshot


# ------------------------------------------------------------------ end to end


def write_state(*states: ActionState, at: datetime | None = None) -> None:
    """The evaluator's state document, as its store writes it (``SloStateDoc.to_doc``)."""
    when = at or datetime.now(UTC)
    doc = SloStateDoc(at=when, minute=when.replace(second=0, microsecond=0),
                      actions={s.action: s for s in states})  # fmt: skip
    get_db().collection(collections.SLO_STATE).document(collections.SLO_STATE_DOC).set(doc.to_doc())


def validate(caller: Caller, services: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"version": "v9", "environment": ENV}
    if services is not None:
        data["services"] = services
    result: dict[str, Any] = caller.call("pack391_preDeployValidator", data).result
    return result


def gate_of(report: dict[str, Any]) -> dict[str, Any]:
    gate: dict[str, Any] = next(g for g in report["gates"] if g["name"] == "error_budget")
    return gate


def test_an_enforced_freeze_refuses_the_release_and_a_lifted_one_lets_it_through(
    caller: Caller, backends: Backends
) -> None:
    db = get_db()
    gateway = ServiceDoc(
        config=service_config(service_id="api-gateway", cloud_run_service="api"),
        state=ServiceState(current_instances=2),
    )
    db.document(f"{collections.SCALING_SERVICES}/api-gateway").set(gateway.to_doc())
    write_state(freeze_state(ENF, ("service:api-gateway",)))

    refused = validate(caller, ["api"])
    assert refused["passed"] is False
    gate = gate_of(refused)
    assert (gate["status"], gate["evidence"]["frozenBy"]) == ("fail", ["service:api-gateway"])
    assert [g["name"] for g in refused["gates"] if g["status"] == "fail"] == ["error_budget"]
    # the start refuses on the stored report, as for any failed gate
    start = caller.call(
        "pack391_startDeployment", {"version": "v9", "environment": ENV, "services": ["api"]}
    ).error
    assert start["status"] == "FAILED_PRECONDITION" and "failed" in start["message"]
    # a release of another service is not held by this service's freeze
    assert gate_of(validate(caller, ["chat"]))["status"] == "pass"

    # the evaluator lifts it (the burn stopped, or ops lifted it): no longer enforced
    write_state(freeze_state(ENF, ("service:api-gateway",), lifted=True))
    lifted = validate(caller, ["api"])
    assert lifted["passed"] is True
    assert gate_of(lifted)["status"] == "pass"


def test_a_platform_freeze_holds_the_default_services_too(
    caller: Caller, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACK391_DEPLOY_SERVICES", "api")
    write_state(freeze_state(ENF, ("platform",)))
    report = validate(caller)
    assert report["passed"] is False
    gate = gate_of(report)
    assert (gate["status"], gate["evidence"]["services"]) == ("fail", ["api"])
    # a state left by an evaluator that stopped running holds nothing
    write_state(
        freeze_state(ENF, ("platform",)),
        at=datetime.now(UTC) - timedelta(seconds=t.SLO_ACTIONS_TTL_SEC + 60),
    )
    stale = gate_of(validate(caller))
    assert stale["status"] == "skipped" and "not running" in stale["evidence"]["why"]


def test_a_shadowed_freeze_passes_saying_it_would_have_refused(
    caller: Caller, backends: Backends
) -> None:
    now = datetime.now(UTC)
    write_state(freeze_state(SHA, ("platform",)), at=now)
    report = validate(caller, ["api"])
    assert report["passed"] is True
    gate = gate_of(report)
    assert gate["status"] == "pass"
    assert gate["evidence"]["wouldRefuse"] is True
    assert gate["evidence"]["detail"] == (
        "would have refused (deploy freeze in shadow mode): platform burning its error budget"
    )
    stored = get_db().document(f"{collections.DEPLOY_REPORTS}/{report['reportId']}").get()
    assert gate_of(stored.to_dict() or {})["evidence"]["wouldRefuse"] is True
    minutes = {minute_of(now), minute_of(datetime.now(UTC))}
    assert sum(read_shadow(get_redis(), m).get("deploy_freeze", 0) for m in minutes) == 1
