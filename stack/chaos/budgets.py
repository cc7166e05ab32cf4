"""Each function's budget as the running stack has it: what the answer-time invariant
(:func:`stack.chaos_check.within_budget`) holds every recorded call to.

A budget is a param (``PACK391_BUDGET_*_MS``, :mod:`shared.edge_budget`) read by the
functions server on every call, from its own environment; the chaos run may run in
another process (``pack391 chaos-run`` against a ``make run`` stack) with other values.
So the values are read from the functions server's environment
(``/proc/<pid>/environ``), and each function's budget is computed with them by the
bundle's own code: :meth:`shared.edge.EdgeSpec.budget_sec` for a callable, the
scheduled budget of its declared timeout for a scheduled function.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

from stack.platform import procs
from stack.platform.handle import StackHandle

BUDGET_PARAMS = (
    "PACK391_BUDGET_USER_MS",
    "PACK391_BUDGET_OPS_MS",
    "PACK391_BUDGET_SCHEDULED_MS",
)
"""The params a function's budget depends on (:mod:`shared.config`)."""

FUNCTIONS_CHILD = "functions"
SOURCE_DIR = Path(__file__).resolve().parents[2]
"""Where ``main.py`` is (the functions server runs there)."""


def bundle() -> ModuleType:
    """``main.py`` of the source directory: every function. The ``pack391`` script's own
    ``sys.path`` does not have that directory (the tests and the server run in it)."""
    if str(SOURCE_DIR) not in sys.path:
        sys.path.append(str(SOURCE_DIR))
    return importlib.import_module("main")


def environ_of(pid: int) -> dict[str, str]:
    """A process's environment as it was started (``/proc/<pid>/environ``)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def stack_params(handle: StackHandle) -> dict[str, str]:
    """The budget params the stack's functions server runs with (only those it sets: the
    others are at their defaults). A stack whose functions server this process cannot
    read (not a child of that stack, another user's): this process's own values."""
    try:
        env = environ_of(handle.child_pid(FUNCTIONS_CHILD))
    except (procs.StackError, OSError):
        env = dict(os.environ)
    return {name: env[name] for name in BUDGET_PARAMS if name in env}


@contextlib.contextmanager
def _environment(params: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with the budget params exactly ``params`` (the rest unset) for the
    block: the params' ``.value`` reads the environment."""
    saved = {name: os.environ.get(name) for name in BUDGET_PARAMS}
    try:
        for name in BUDGET_PARAMS:
            if name in params:
                os.environ[name] = params[name]
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def function_budgets(params: Mapping[str, str]) -> dict[str, float]:
    """Every function of the bundle (``main.FUNCTION_AREAS``) with a budget, in seconds,
    under ``params``: callables by their edge spec, scheduled functions by their declared
    timeout (the manifest's: a timeout given as an expression of params, which the
    manifest holds as CEL text, is not evaluated here and that function is left out);
    task-queue functions have no caller waiting and are left out."""
    from shared.edge import edge_spec_of
    from shared.edge_budget import scheduled_budget_sec

    budgets: dict[str, float] = {}
    main = bundle()
    with _environment(params):
        for name in main.FUNCTION_AREAS:
            endpoint = getattr(main, name)
            spec = edge_spec_of(endpoint)
            if spec is not None:
                budgets[name] = spec.budget_sec()
                continue
            manifest = getattr(endpoint, "__firebase_endpoint__", None)
            if manifest is not None and getattr(manifest, "scheduleTrigger", None):
                timeout = getattr(manifest, "timeoutSeconds", None)
                if isinstance(timeout, str):
                    continue  # a CEL expression of params (the backup's): not known here
                budgets[name] = scheduled_budget_sec({"timeout_sec": timeout})
    return budgets


def stack_budgets(handle: StackHandle) -> dict[str, float]:
    """:func:`function_budgets` with the stack's own params (:func:`stack_params`)."""
    return function_budgets(stack_params(handle))
