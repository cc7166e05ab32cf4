"""``make bench-stack`` in small, on real time (make test's quiet lane): one short step
against the real sandbox, with CPU sampled and shed counted apart from errors. Nothing
may be dropped, so it runs with a core of its own."""

from __future__ import annotations

import os

import pytest

from bench.stack import run_step
from bench.stack_measures import commit_delta, commit_stats, count_docs
from shared.firestore import get_db
from stack.aioserve import served_aiohttp
from stack.sandbox import Sandbox
from tests.conftest import Backends

pytestmark = pytest.mark.serial  # a quiet core: a load step with nothing dropped


def test_one_short_step_against_the_sandbox(backends: Backends) -> None:
    with served_aiohttp(Sandbox(get_db(), backends.redis_url).app()) as url:
        before = commit_stats(url)
        step = run_step(url, 40, 5, {"test-process": os.getpid()}, shards=1)
        commits = commit_delta(before, commit_stats(url))
    brief = step.brief()
    requests = step.summary["requests"]  # swipe_load ramps up and down: fewer than 40 x 5
    assert 150 < requests == step.summary["scheduled"] and step.summary["dropped"] == 0
    assert brief["errors"] == 0 and brief["shed"] == 0, brief
    assert {"generator", "test-process"} <= set(step.cpu)
    assert step.cpu["generator"]["cpuSec"] > 0 and step.wall_sec >= 5
    written = count_docs(backends.project, backends.firestore_host, step.run_id)
    # 90% of swipe_load's requests are swipes, each one document (none rate limited here)
    swipes = step.summary["endpoints"]["swipe"]["count"]
    assert written == swipes and 0.85 < swipes / requests < 0.95
    assert commits is not None and commits["on"] and commits["writes"] == swipes
    assert 1 <= commits["commits"] <= swipes and commits["failedCommits"] == 0
