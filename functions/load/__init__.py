"""Load & stress testing: the ``pack391_*`` edges live in :mod:`functions.load.edges`.

This package stays light: importing the engine (``functions.load.engine``), as the
``pack391 loadtest`` workers and the CLI do, must not pay for the edges' Firebase,
Firestore and Cloud Tasks imports. The edges' names resolve on first use (PEP 562), so
``from functions.load import pack391_runLoadTest`` works as before.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "execute_shard",
    "load_service",
    "pack391ExecuteLoadTest",
    "pack391_abortLoadTest",
    "pack391_cleanupLoadTests",
    "pack391_getLoadTestResults",
    "pack391_runLoadTest",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("functions.load.edges"), name)
    raise AttributeError(f"module 'functions.load' has no attribute {name!r}")
