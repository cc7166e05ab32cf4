"""Load-test fixtures: the sandbox on a free port, and a stalling target."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.targets import minimal_app, stalling_app
from shared.firestore import get_db
from stack.aioserve import served_aiohttp
from stack.sandbox import Sandbox
from tests.conftest import Backends


@pytest.fixture
def sandbox_url(backends: Backends) -> Iterator[str]:
    with served_aiohttp(Sandbox(get_db(), backends.redis_url).app()) as url:
        yield url


@pytest.fixture
def stalling_url() -> Iterator[str]:
    with served_aiohttp(stalling_app(answer_ms=10, period_sec=2.0, stall_sec=0.5)) as url:
        yield url


@pytest.fixture
def fast_url() -> Iterator[str]:
    with served_aiohttp(minimal_app()) as url:
        yield url
