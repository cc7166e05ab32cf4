"""Block mirrors and minute windows of traffic protection: literal tables, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.ddos import policy
from shared.models.ddos import BlockKind, BlockScope
from shared.ratelimit import keys

NOW = datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC)
MINUTE = keys.minute_of(NOW)


@pytest.mark.parametrize(
    ("count", "skip", "minutes"),
    [
        (0, 0, []),
        (1, 0, [MINUTE - 1]),
        (3, 0, [MINUTE - 1, MINUTE - 2, MINUTE - 3]),
        (2, 1, [MINUTE - 2, MINUTE - 3]),
    ],
)
def test_minutes_back(count: int, skip: int, minutes: list[int]) -> None:
    assert policy.minutes_back(NOW, count, skip) == minutes


def test_block_doc_mirrors_a_block_until_its_end() -> None:
    until_ms = int(NOW.timestamp() * 1000) + 15 * 60 * 1000
    doc = policy.block_doc(
        BlockScope.IP, "203.0.113.7", BlockKind.DDOS, "flood", 2, NOW, until_ms, {"rps": 900}
    )
    assert (doc.scope, doc.subject, doc.kind, doc.reason, doc.offence) == (
        BlockScope.IP,
        "203.0.113.7",
        BlockKind.DDOS,
        "flood",
        2,
    )
    assert doc.blocked_at == NOW
    assert doc.expires_at == datetime(2026, 11, 27, 12, 15, 30, tzinfo=UTC)
    assert doc.evidence == {"rps": 900}
    no_evidence = policy.block_doc(BlockScope.USER, "u1", BlockKind.DDOS, "r", 1, NOW, until_ms)
    assert no_evidence.evidence == {}
