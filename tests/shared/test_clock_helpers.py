"""The clock helpers every area shares: literal tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.clock import from_ms, minute_of, ms, new_id
from shared.ratelimit import keys

CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("moment", "minute"),
    [
        (datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC), datetime(2026, 11, 27, 12, 0, tzinfo=UTC)),
        (
            datetime(2026, 11, 27, 12, 0, 59, 999999, tzinfo=UTC),
            datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        ),
        (datetime(2026, 11, 27, 13, 1, 30, tzinfo=CET), datetime(2026, 11, 27, 12, 1, tzinfo=UTC)),
    ],
)
def test_minute_of_is_the_utc_minute(moment: datetime, minute: datetime) -> None:
    assert minute_of(moment) == minute
    assert minute_of(moment).tzinfo == UTC


def test_the_redis_minute_id_is_a_different_thing() -> None:
    moment = datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC)
    assert keys.minute_of(moment) == int(minute_of(moment).timestamp()) // 60 == 29_929_680


@pytest.mark.parametrize(
    ("moment", "millis"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(2026, 11, 27, 12, 0, 0, 250000, tzinfo=UTC), 1_795_780_800_250),
    ],
)
def test_ms_and_back(moment: datetime, millis: int) -> None:
    assert ms(moment) == millis
    assert from_ms(millis) == moment


@pytest.mark.parametrize(
    ("now", "suffix", "found"),
    [
        (datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC), "1a2b3c4d", "20261127120005-1a2b3c4d"),
        (datetime(2026, 11, 27, 13, 0, 5, tzinfo=CET), "x", "20261127120005-x"),
    ],
)
def test_new_id_takes_now(now: datetime, suffix: str, found: str) -> None:
    assert new_id(now, suffix) == found


def test_new_id_without_a_suffix_is_random_and_sortable_by_time() -> None:
    now = datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC)
    first, second = new_id(now), new_id(now)
    assert first != second
    assert first[:15] == second[:15] == "20261127120005-"
    assert len(first) == 23
    assert new_id(now + timedelta(seconds=1)) > max(first, second)
