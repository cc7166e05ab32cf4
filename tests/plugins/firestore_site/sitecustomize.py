"""Loaded by Python at the start of every process whose ``PYTHONPATH`` holds this
directory: the suite puts it there (tests/plugins/firestore_queries.py) so that every
process the tests start (the local stack, the sandbox and its workers, the Firebase
CLI's Python workers, CLI calls) records its Firestore queries
(:mod:`pack391_firestore_recorder`). Production never has this directory on its path.

Python imports only the first ``sitecustomize`` on the path, so this one then runs the
next one, if any (another recorder's, or the interpreter's own).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == HERE:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            import importlib.util

            spec = importlib.util.spec_from_file_location("_pack391_next_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            return


try:
    __import__("pack391_firestore_recorder").install()
except Exception as exc:  # a broken recorder must not stop the process
    print(f"pack391_firestore_recorder: not installed: {exc!r}", file=sys.stderr)
_chain()
