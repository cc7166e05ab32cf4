"""A world that looks like launch day: each attack of :mod:`stack.population`,
small, beside the same legitimate population, against the real Redis and the Firestore
emulator, asserting its goals: legitimate requests denied at most 0.1 % and no
established user denied because of someone else's traffic; the attack's requests admitted
at most 1 % from the first full minute after its detection; Redis memory per million
attack requests within the budget (net of the control run); a bypass keyed by the
bypasser's own address. The acceptance tests of the protection core."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from shared.firestore import get_db
from stack.platform import datastores
from stack.population import (
    ATTACKS,
    AttackRow,
    Population,
    PopulationConfig,
    Scenario,
    format_table,
)
from tests.conftest import Backends

CONFIG = PopulationConfig.small()

_control: list[AttackRow] = []
"""The control run's row, once per test process (its memory growth is every attack's
base; the legitimate traffic is the same seeded traffic in every run)."""


@pytest.fixture
def population(backends: Backends) -> Iterator[Population]:
    client = redis.Redis.from_url(backends.redis_url, decode_responses=True)

    def reset() -> None:
        client.flushall()
        datastores.wipe_firestore(backends.firestore_host, backends.project)

    yield Population(client, get_db(), CONFIG, reset)
    client.close()


def control(population: Population) -> AttackRow:
    if not _control:
        _control.append(population.run(Scenario.NONE))
    return _control[0]


def test_the_population_alone_is_never_denied(population: Population) -> None:
    row = control(population)
    table = format_table([row])
    assert row.legit_requests > 2_000, table
    assert row.legit_denied == 0, table
    assert row.detected_after_sec is None and row.attack_requests == 0, table
    assert "lockdown off, DDoS mode off" in row.state, table


def test_a_user_over_its_own_limit_is_denied_by_its_own_traffic(backends: Backends) -> None:
    """The measurement itself: heavy users at 1.5x their limit are denied (user_limit),
    and those denials are theirs, not someone else's traffic."""
    client = redis.Redis.from_url(backends.redis_url, decode_responses=True)
    config = replace(CONFIG, heavy_share_of_limit=1.5, warmup_min=2, attack_min=1)
    try:
        row = Population(client, get_db(), config).run(Scenario.NONE)
    finally:
        client.close()
    table = format_table([row])
    assert row.legit_denied > 0, table
    assert set(row.legit_denied_by_reason) == {"user_limit"}, table
    assert row.established_denied_by_others == 0, table
    assert row.goals()["legit"] == "FAIL", table


@pytest.mark.parametrize("scenario", ATTACKS, ids=[s.value for s in ATTACKS])
def test_each_attack_meets_the_goals(population: Population, scenario: Scenario) -> None:
    base = control(population)
    row = population.run(scenario, base.memory_growth_bytes)
    table = format_table([base, row])
    goals = row.goals()
    assert row.attack_requests > 0, table
    assert row.legit_denied_pct <= 0.1, table
    assert row.established_denied_by_others == 0, table
    if row.attack_goal:
        assert row.detected_after_sec is not None or row.attack_admitted == 0, table
        assert goals["attack"] == "PASS", table
    assert goals["memory"] != "FAIL", table
    assert goals["key"] != "FAIL", table
    if scenario is Scenario.CREDENTIAL_STUFFING_SHARED:
        assert "0 brute-force block(s)" in row.state, table  # the NAT's block is held
    if scenario is Scenario.SELF_REPORTED_BRUTE_FORCE:
        assert "1 brute-force block(s)" in row.state, table  # the reporter only, never the NAT
