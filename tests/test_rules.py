"""firestore.rules against the emulator's rules engine, with emulator ID tokens.

REST calls carrying an (unsigned) ID token are checked against the rules; the
Python admin client used to seed the data bypasses them, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from shared import collections
from shared.firestore import get_db
from stack.platform import datastores
from stack.platform.tokens import emulator_id_token
from tests.conftest import Backends

ROLES: dict[str, tuple[str, dict[str, Any]]] = {
    "anonymous": ("", {}),
    "user": ("u1", {}),
    "other_user": ("u2", {}),
    "ops": ("ops-1", {"ops": True}),
    "admin": ("admin-1", {"admin": True}),
}

M = collections.MARKETS
DOCS = {
    "market": f"{M}/PL",
    "version": f"{M}/PL/{collections.MARKET_VERSIONS}/1",
    "own_admission": f"{M}/PL/{collections.MARKET_ADMISSIONS}/u1",
    "own_market_member": f"{collections.MARKET_MEMBERS}/u1",
    "config": f"{collections.CONFIG}/{collections.CONFIG_MARKETS_DOC}",
    "audit": f"{collections.AUDIT_LOG}/e1",
    "unknown": "somewhere_else/doc",
    "geo": f"{collections.GEO_THROTTLES}/BR",
    "block": f"{collections.BLOCKS}/b1",
    "detection": f"{collections.DDOS_DETECTIONS}/d1",
    "allowlist": f"{collections.DDOS_ALLOWLIST}/10.0.0.0_8",
    "alert": f"{collections.ALERTS}/a1",
    "alert_key": f"{collections.ALERT_KEYS}/k1",
    "own_pass": f"{collections.PANIC_PASSES}/p1",
    # auto-scaling engine
    "scaling_service": f"{collections.SCALING_SERVICES}/api-gateway",
    "scaling_decision": f"{collections.SCALING_DECISIONS}/d1",
    "scaling_event": f"{collections.SCALING_EVENTS}/e1",
    "legacy_scaling_alert": f"{collections.LEGACY_SCALING_ALERTS}/a1",
    # disaster recovery
    "backup": f"{collections.BACKUPS}/20260101T000000Z-abcdef",
    "backup_verification": f"{collections.BACKUP_VERIFICATIONS}/v1",
    "legacy_backup_alert": f"{collections.LEGACY_BACKUP_ALERTS}/a1",
    "backup_drill": f"{collections.BACKUP_DRILLS}/d1",
    # deploy guard
    "deployment": f"{collections.DEPLOYMENTS}/d1",
    "deploy_report": f"{collections.DEPLOY_REPORTS}/r1",
    "deploy_active": f"{collections.DEPLOY_ACTIVE}/production",
    "deploy_snapshot": f"{collections.DEPLOY_SNAPSHOTS}/production",
    # ops dashboard
    "ops_live": f"{collections.OPS_METRICS}/{collections.OPS_LIVE_DOC}",
    "ops_history": f"{collections.OPS_METRICS_HISTORY}/20261127T1200Z",
    "ops_rule": f"{collections.OPS_ALERT_RULES}/failed_payouts",
    # service-level objectives
    "slo_state": f"{collections.SLO_STATE}/{collections.SLO_STATE_DOC}",
    "sli_minute": f"{collections.SLI_MINUTES}/20261207T1200Z",
    # load testing
    "load_run": f"{collections.LOAD_RUNS}/r1",
    "load_slice": f"{collections.LOAD_RUNS}/r1/{collections.LOAD_RUN_SLICES}/s1",
    "load_report": f"{collections.LOAD_RUNS}/r1/{collections.LOAD_RUN_REPORT}/final",
    "sandbox_swipe": f"{collections.LOAD_SANDBOX_COLLECTIONS[0]}/s1",
    "sandbox_payout": f"{collections.LOAD_SANDBOX_COLLECTIONS[2]}/p1",
}

# who may read each document (everyone else is denied); nobody may write any
READERS = {
    "market": {"ops", "admin"},
    "version": {"ops", "admin"},
    "own_admission": {"user", "ops", "admin"},
    "own_market_member": set(),  # internal to the market transactions
    "config": {"ops", "admin"},
    "audit": {"admin"},
    "unknown": set(),
    "geo": {"ops", "admin"},
    "block": {"ops", "admin"},
    "detection": {"ops", "admin"},
    "allowlist": {"ops", "admin"},
    "alert": {"ops", "admin"},
    "alert_key": {"ops", "admin"},
    "own_pass": {"user", "ops", "admin"},
    # auto-scaling engine
    "scaling_service": {"ops", "admin"},
    "scaling_decision": {"ops", "admin"},
    "scaling_event": {"ops", "admin"},
    "legacy_scaling_alert": set(),  # dropped with the one alert model: no rule, nobody reads
    # disaster recovery
    "backup": {"ops", "admin"},
    "backup_verification": {"ops", "admin"},
    "legacy_backup_alert": set(),
    "backup_drill": {"ops", "admin"},
    # deploy guard
    "deployment": {"ops", "admin"},
    "deploy_report": {"ops", "admin"},
    "deploy_active": set(),
    "deploy_snapshot": {"ops", "admin"},
    # ops dashboard
    "ops_live": {"ops", "admin"},
    "ops_history": {"ops", "admin"},
    "ops_rule": {"ops", "admin"},
    # service-level objectives
    "slo_state": {"ops", "admin"},
    "sli_minute": {"ops", "admin"},
    # load testing
    "load_run": {"ops", "admin"},
    "load_slice": {"ops", "admin"},
    "load_report": {"ops", "admin"},
    "sandbox_swipe": set(),
    "sandbox_payout": set(),
}

SEED: dict[str, dict[str, Any]] = {"own_pass": {"uid": "u1"}}
"""Documents whose rules read their data (the rest get {"seeded": True})."""


pytestmark = pytest.mark.module_data


def seed() -> None:
    """Every document of DOCS, in one batch (one commit)."""
    db = get_db()
    batch = db.batch()
    for name, path in DOCS.items():
        batch.set(db.document(path), {"seeded": True, **SEED.get(name, {})})
    batch.commit()


@pytest.fixture(scope="module")
def seeded_once(backends: Backends) -> Backends:
    """The module's data, written once: the rules are read-only for every client, so the
    644 read and write checks leave it as they found it (``module_data``: the per-test
    wipe is skipped here). A test that writes through the admin client uses ``seeded``."""
    datastores.wipe_firestore(backends.firestore_host, backends.project)
    seed()
    return backends


def as_seeded() -> bool:
    """Whether the data is exactly the module's (one read of every document)."""
    db = get_db()
    snaps = {s.reference.path: s for s in db.get_all([db.document(p) for p in DOCS.values()])}
    return all(
        snaps[path].exists and snaps[path].to_dict() == {"seeded": True, **SEED.get(name, {})}
        for name, path in DOCS.items()
    )


@pytest.fixture
def seeded(seeded_once: Backends) -> Iterator[Backends]:
    """The module's data, put back after a test that changed it (a denied write changes
    nothing, but a test that failed because one was allowed must not change what the next
    one reads; the admission test writes documents of its own)."""
    yield seeded_once
    datastores.wipe_firestore(seeded_once.firestore_host, seeded_once.project)
    seed()


@pytest.fixture
def seeded_unchanged(seeded_once: Backends) -> Iterator[Backends]:
    """The module's data for a test that must not change it; put back if it did."""
    yield seeded_once
    if not as_seeded():
        datastores.wipe_firestore(seeded_once.firestore_host, seeded_once.project)
        seed()


def _headers(role: str, project: str) -> dict[str, str]:
    uid, claims = ROLES[role]
    if not uid:
        return {}
    return {"Authorization": f"Bearer {emulator_id_token(project, uid, claims)}"}


def _url(be: Backends, path: str) -> str:
    return (
        f"http://{be.firestore_host}/v1/projects/{be.project}/databases/(default)/documents/{path}"
    )


@pytest.mark.parametrize("doc", sorted(DOCS))
@pytest.mark.parametrize("role", sorted(ROLES))
def test_read(seeded_once: Backends, doc: str, role: str) -> None:
    response = requests.get(
        _url(seeded_once, DOCS[doc]), headers=_headers(role, seeded_once.project), timeout=10
    )
    expected = 200 if role in READERS[doc] else 403
    assert response.status_code == expected, response.text


@pytest.mark.parametrize("doc", sorted(DOCS))
@pytest.mark.parametrize("role", sorted(ROLES))
def test_no_client_writes(seeded_unchanged: Backends, doc: str, role: str) -> None:
    be = seeded_unchanged
    body = {"fields": {"launchStatus": {"stringValue": "public"}}}
    response = requests.patch(
        _url(be, DOCS[doc]), json=body, headers=_headers(role, be.project), timeout=10
    )
    assert response.status_code == 403, response.text
    delete = requests.delete(_url(be, DOCS[doc]), headers=_headers(role, be.project), timeout=10)
    assert delete.status_code == 403, delete.text
    assert get_db().document(DOCS[doc]).get().to_dict() == {"seeded": True, **SEED.get(doc, {})}


def test_market_list_for_ops_only(seeded_once: Backends) -> None:
    url, project = _url(seeded_once, M), seeded_once.project
    assert requests.get(url, headers=_headers("ops", project), timeout=10).status_code == 200
    assert requests.get(url, headers=_headers("user", project), timeout=10).status_code == 403


def test_user_cannot_create_or_activate_their_own_admission(seeded: Backends) -> None:
    """Admissions are written by the functions only: a user can neither take a market
    place by creating their admission, nor keep a pending one by activating it directly."""
    own = get_db().document(DOCS["own_admission"])
    pending = {"uid": "u1", "country": "PL", "pendingUntil": datetime(2030, 1, 1, tzinfo=UTC)}
    own.set(pending)
    headers = _headers("user", seeded.project)
    activate = requests.patch(
        _url(seeded, DOCS["own_admission"]),
        params=[
            ("updateMask.fieldPaths", "activatedAt"),
            ("updateMask.fieldPaths", "pendingUntil"),
        ],
        json={"fields": {"activatedAt": {"timestampValue": "2026-11-27T12:00:00Z"}}},
        headers=headers,
        timeout=10,
    )
    assert activate.status_code == 403, activate.text
    create = requests.post(
        _url(seeded, f"{M}/DE/{collections.MARKET_ADMISSIONS}"),
        params={"documentId": "u1"},
        json={"fields": {"uid": {"stringValue": "u1"}}},
        headers=headers,
        timeout=10,
    )
    assert create.status_code == 403, create.text
    assert own.get().to_dict() == pending
    assert not get_db().document(f"{M}/DE/{collections.MARKET_ADMISSIONS}/u1").get().exists


def test_user_cannot_free_or_claim_their_market_place(seeded: Backends) -> None:
    """The per-user place document (one soft-launch place across markets) is the
    functions' alone: a user can neither delete it to take a second place, nor point it
    at another market, nor create one; and cannot list who holds places."""
    db = get_db()
    held = {"uid": "u1", "country": "PL", "admittedAt": datetime(2026, 12, 1, tzinfo=UTC)}
    db.document(DOCS["own_market_member"]).set(held)
    headers = _headers("user", seeded.project)
    url = _url(seeded, DOCS["own_market_member"])
    assert requests.delete(url, headers=headers, timeout=10).status_code == 403
    moved = requests.patch(
        url,
        params={"updateMask.fieldPaths": "country"},
        json={"fields": {"country": {"stringValue": "DE"}}},
        headers=headers,
        timeout=10,
    )
    assert moved.status_code == 403, moved.text
    created = requests.post(
        _url(seeded, collections.MARKET_MEMBERS),
        params={"documentId": "u2"},
        json={"fields": {"uid": {"stringValue": "u2"}, "country": {"stringValue": "DE"}}},
        headers=_headers("other_user", seeded.project),
        timeout=10,
    )
    assert created.status_code == 403, created.text
    for role in ("user", "ops", "admin"):
        listing = requests.get(
            _url(seeded, collections.MARKET_MEMBERS),
            headers=_headers(role, seeded.project),
            timeout=10,
        )
        assert listing.status_code == 403, (role, listing.text)
    assert db.document(DOCS["own_market_member"]).get().to_dict() == held
    assert not db.document(f"{collections.MARKET_MEMBERS}/u2").get().exists
