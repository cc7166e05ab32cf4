"""Every Google API method the bundle calls in the test suite, checked against the roles
``pack391 bootstrap`` grants, so a deploy never meets a permission the bootstrap left out.

The fakes of Google's APIs (``tests/fakes/http_api.py``, ``grpc_api.py``, ``serving.py``)
record each method they receive (:data:`tests.fakes.google_apis.CALLED`). At the end of
the session every recorded method must be a row of :data:`stack.release.permissions.METHODS`
whose permissions bootstrap's roles give its caller; otherwise the session fails, naming
the method and what is missing. Methods the suite reaches only through the emulators
(Firestore's data API) are rows of the table too, checked by tests/stack/test_permissions.py.

Under pytest-xdist each worker writes what it recorded to a directory the controller made
(``PACK391_API_CALLS_DIR``, inherited by the workers it starts), and the controller checks
the union once every worker is done. A plain run checks its own record.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from stack.release.permissions import problems
from tests.fakes import google_apis

DIR_ENV = "PACK391_API_CALLS_DIR"


def _worker(config: pytest.Config) -> str | None:
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput is not None else None


def pytest_configure(config: pytest.Config) -> None:
    if _worker(config) is None and config.getoption("numprocesses", None):
        os.environ[DIR_ENV] = tempfile.mkdtemp(prefix="pack391-api-calls-")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    worker = _worker(config)
    if worker is not None:  # the controller checks
        shared = os.environ.get(DIR_ENV)
        if shared:
            (Path(shared) / f"{worker}.json").write_text(json.dumps(google_apis.called()))
        return
    calls = set(google_apis.called())
    shared = os.environ.get(DIR_ENV)
    if shared:
        for part in Path(shared).glob("*.json"):
            calls.update(json.loads(part.read_text()))
    found = problems(calls)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not found:
        if reporter is not None:
            reporter.write_line(
                f"google api calls: {len(calls)} methods recorded, every one granted by "
                "pack391 bootstrap (tests/plugins/api_calls.py)"
            )
        return
    if reporter is not None:
        reporter.write_sep("=", "Google API calls that pack391 bootstrap does not permit", red=True)
        for problem in found:
            reporter.write_line(problem)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
