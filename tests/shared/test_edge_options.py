"""The decorators' SDK options are typed as the SDK types them, and what a callable
declares (role, request model, rate limit) is one frozen record on its endpoint."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from firebase_functions import options as sdk_options
from pydantic import StrictInt

from shared.auth import Role
from shared.edge import CallContext, EdgeSpec, callable_function, edge_spec_of
from shared.edge_options import CallableOptions, ScheduledOptions
from shared.models import RequestModel
from shared.ratelimit.policy import EndpointClass

ROOT = Path(__file__).resolve().parents[2]

SNIPPET_HEAD = """\
from shared.auth import Role
from shared.edge import CallContext, ScheduledContext, callable_function, scheduled_function
from shared.models import RequestModel


class Req(RequestModel):
    pass


"""

MISSPELT = (
    SNIPPET_HEAD
    + """\
@callable_function(role=Role.USER, request=Req, timout_sec=60)
def pack391_misspelt(ctx: CallContext, req: Req) -> None:
    return None


@callable_function(role=Role.USER, request=Req, min_instances="1")
def pack391_mistyped(ctx: CallContext, req: Req) -> None:
    return None


@scheduled_function(schedule="every 1 minutes", retry_cout=1)
def pack391_misspeltSchedule(ctx: ScheduledContext) -> None:
    return None
"""
)

CORRECT = (
    SNIPPET_HEAD
    + """\
from firebase_functions import options
from shared.config import BACKUP_KEY, HOT_MIN_INSTANCES


@callable_function(
    role=Role.USER,
    request=Req,
    timeout_sec=60,
    min_instances=HOT_MIN_INSTANCES,
    memory=options.MemoryOption.MB_512,
    secrets=[BACKUP_KEY],
    invoker="public",
)
def pack391_fine(ctx: CallContext, req: Req) -> None:
    return None


@scheduled_function(
    schedule="every 1 minutes", uses_redis=False, retry_count=1, max_doublings=2, timeout_sec=60
)
def pack391_fineSchedule(ctx: ScheduledContext) -> None:
    return None
"""
)


def mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    """The project's mypy (its pyproject settings, --strict) on ``files``, run from the
    repository root so that ``shared`` resolves as it does for ``make lint``."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_misspelt_or_mistyped_option_is_a_type_error(tmp_path: Path) -> None:
    # module names of their own per run: mypy's incremental cache (.mypy_cache) keys a
    # module by its name, and would re-report a same-named module's errors at the path
    # of the run that cached it
    run = uuid.uuid4().hex[:8]
    bad = tmp_path / f"misspelt_options_{run}.py"
    bad.write_text(MISSPELT)
    good = tmp_path / f"correct_options_{run}.py"
    good.write_text(CORRECT)
    result = mypy(bad, good)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    # every error is in the bad file: the correct options type-check
    assert all(line.startswith(str(bad)) for line in errors), result.stdout
    text = "\n".join(errors)
    assert 'Unexpected keyword argument "timout_sec" for "callable_function"' in text
    assert 'Argument "min_instances" to "callable_function" has incompatible type "str"' in text
    assert 'Unexpected keyword argument "retry_cout" for "scheduled_function"' in text
    assert len(errors) == 3, text


RESET = type(sdk_options.RESET_VALUE)
"""The SDK's reset sentinel's class: the one thing our option types leave out."""


def without_reset(hint: Any) -> Any:
    """The SDK's type of an option without the reset sentinel (``RESET_VALUE``)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and RESET in args:
        kept = tuple(arg for arg in args if arg is not RESET)
        return typing.Union[kept]  # noqa: UP007 (a runtime union of a tuple of types)
    return hint


def sdk_fields(cls: type, leave_out: Collection[str] = ()) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in leave_out]
    return {name: without_reset(hints[name]) for name in names}


@pytest.mark.parametrize(
    ("ours", "sdk", "leave_out"),
    [
        (CallableOptions, sdk_options.HttpsOptions, set()),
        # schedule and timezone are scheduled_function's own keywords
        (ScheduledOptions, sdk_options.ScheduleOptions, {"schedule", "timezone"}),
    ],
    ids=["HttpsOptions", "ScheduleOptions"],
)
def test_the_option_types_mirror_the_installed_sdk(
    ours: type, sdk: type, leave_out: set[str]
) -> None:
    """Field for field and type for type (an SDK upgrade that adds or retypes an option
    fails here, not at a deploy)."""
    assert typing.get_type_hints(ours) == sdk_fields(sdk, leave_out)


class PingRequest(RequestModel):
    value: StrictInt = 0


def test_a_callable_declares_one_frozen_record() -> None:
    @callable_function(role=Role.OPS, request=PingRequest, rate_limit=EndpointClass.STAFF)
    def pack391_testSpec(ctx: CallContext, req: PingRequest) -> None:
        return None

    spec = edge_spec_of(pack391_testSpec)
    assert spec == EdgeSpec(Role.OPS, PingRequest, EndpointClass.STAFF)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.role = Role.USER  # type: ignore[misc]
    # only the record: none of the old ad-hoc attributes
    assert not [name for name in vars(pack391_testSpec) if name.startswith("__pack391")]


def test_every_callable_has_its_record_and_nothing_else_has_one(
    functions: dict[str, Any],
) -> None:
    for name, fn in functions.items():
        is_callable = fn.__firebase_endpoint__.callableTrigger is not None
        spec = edge_spec_of(fn)
        assert (spec is not None) == is_callable, name
        if spec is not None:
            assert isinstance(spec.role, Role), name
            assert issubclass(spec.request, RequestModel), name
