"""The deployed bundle uses only the SDKs' public API; the tooling's private use is fenced.

A static scan (no import): in every module of ``functions/``, ``shared/`` and ``main.py``,
an attribute ``x._name`` where ``x`` is an SDK object is refused, as is importing a
private name or module of an SDK. "An SDK object", a heuristic per scope (module,
function, nested function):

- a name imported from an SDK package (``import firebase_admin``, ``from hdrh.histogram
  import HdrHistogram``), or an attribute chain starting at one (``https_fn.HttpsError``);
- a parameter or variable annotated with such a type (``hist: HdrHistogram``);
- a variable assigned the result of calling one (``err = https_fn.HttpsError(...)``).

The SDKs: Firebase (``firebase_admin``, ``firebase_functions``, ``functions_framework``),
Google's client libraries (``google.*``), Redis (``redis``), HdrHistogram (``hdrh``).
``stack/`` and ``bench/`` reach SDK private attributes only through ``stack/sdk_private.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SDK_PACKAGES = (
    "firebase_admin",
    "firebase_functions",
    "functions_framework",
    "google",
    "redis",
    "hdrh",
)

BUNDLE_ALLOWED: dict[str, set[str]] = {
    "shared/firestore_budget.py": {
        "BudgetedClient._firestore_api (defined in a subclass of an SDK class)",
        "BudgetedClient: self._firestore_api_helper",
    },
}
"""Known private uses in the bundle, ``path -> {"x._name"}``. One: ``firestore.Client``
has no public way to give it a gRPC channel of one's own, and every Firestore RPC must
keep the call's budget (shared/firestore_budget.py, whose own test fails if an SDK update
moves these names). Nothing else, and it should stay so."""

TOOLING_FENCE = "stack/sdk_private.py"
"""The one tooling module allowed to touch SDK private attributes."""


def _is_sdk(module: str | None) -> bool:
    return module is not None and module.split(".", 1)[0] in SDK_PACKAGES


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _root(node: ast.expr) -> str | None:
    """The name an attribute chain or a call starts at: ``a`` for ``a.b.c(...)``."""
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id
        else:
            return None


def _annotation_names(node: ast.expr | None) -> Iterator[str]:
    """Root names of every type in an annotation (``A | None``, ``list[A]``, ``"A"``)."""
    if node is None:
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name | ast.Attribute):
            root = _root(sub)
            if root is not None:
                yield root


ScopeNode = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _own_nodes(scope: ScopeNode) -> Iterator[ast.AST]:
    """The nodes of a scope, not descending into nested functions (their own scope)."""
    stack: list[ast.AST] = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def private_uses(source: str) -> list[str]:
    """Every ``x._name`` on an SDK object, and every private SDK import, in ``source``."""
    found: list[str] = []

    def scan(scope: ScopeNode, outer: frozenset[str]) -> None:
        names = set(outer)
        nodes = list(_own_nodes(scope))
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = scope.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None and set(_annotation_names(arg.annotation)) & names:
                    names.add(arg.arg)
        # imports first, then (twice, for chains) what is typed or built from them
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _is_sdk(alias.name):
                        names.add((alias.asname or alias.name).split(".", 1)[0])
                        if any(_private(part) for part in alias.name.split(".")):
                            found.append(f"import {alias.name}")
            elif isinstance(node, ast.ImportFrom) and not node.level and _is_sdk(node.module):
                module = node.module or ""
                for alias in node.names:
                    names.add(alias.asname or alias.name)
                    if any(_private(part) for part in [*module.split("."), alias.name]):
                        found.append(f"from {module} import {alias.name}")
        for _ in range(2):
            for node in nodes:
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    if set(_annotation_names(node.annotation)) & names:
                        names.add(node.target.id)
                elif (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Call)
                    and _root(node.value) in names
                ):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in nodes:
            if isinstance(node, ast.Attribute) and _private(node.attr):
                if _root(node.value) in names:
                    found.append(f"{ast.unparse(node.value)}.{node.attr}")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                scan(node, frozenset(names))

    tree = ast.parse(source)
    scan(tree, frozenset())
    found.extend(_subclass_uses(tree))
    return found


def _subclass_uses(tree: ast.Module) -> Iterator[str]:
    """In a class that extends an SDK class: each private method it defines (an override
    of the SDK's private API, or a name it may clash with) and each ``self._name`` it
    reads that the class itself does not define (the SDK's private state)."""
    sdk_names = {
        (alias.asname or alias.name).split(".", 1)[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and _is_sdk(node.module if isinstance(node, ast.ImportFrom) else node.names[0].name)
        and not (isinstance(node, ast.ImportFrom) and node.level)
        for alias in node.names
    }
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if not any(_root(base) in sdk_names for base in cls.bases):
            continue
        own = {
            target.attr
            for node in ast.walk(cls)
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Attribute) and _root(target.value) == "self"
        }
        for member in cls.body:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and _private(member.name):
                own.add(member.name)
                yield f"{cls.name}.{member.name} (defined in a subclass of an SDK class)"
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr not in own
            ):
                yield f"{cls.name}: self.{node.attr}"


def modules(*tops: str) -> list[Path]:
    paths: list[Path] = []
    for top in tops:
        path = ROOT / top
        paths.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return paths


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # the three private uses the bundle had, each found by one of the rules
        ("import firebase_admin\nif not firebase_admin._apps: pass\n", ["firebase_admin._apps"]),
        (
            "from firebase_functions import https_fn\n"
            "def f(code):\n"
            "    err = https_fn.HttpsError(code, 'm')\n"
            "    return err._http_error_code.status\n",
            ["err._http_error_code"],
        ),
        (
            "from hdrh.histogram import HdrHistogram\n"
            "def mean(hist: HdrHistogram, v: int) -> int:\n"
            "    return hist._hdr_median_equiv_value(v)\n",
            ["hist._hdr_median_equiv_value"],
        ),
        (
            "from google.cloud.firestore_v1 import _helpers\n",
            ["from google.cloud.firestore_v1 import _helpers"],
        ),
        ("from firebase_functions import params\nx = params._params\n", ["params._params"]),
        # a subclass of an SDK class: its private overrides and the SDK state it reads
        (
            "from google.cloud import firestore\n"
            "class C(firestore.Client):\n"
            "    def __init__(self):\n"
            "        self._mine = 1\n"
            "    @property\n"
            "    def _api(self):\n"
            "        return self._helper(self._mine)\n",
            ["C._api (defined in a subclass of an SDK class)", "C: self._helper"],
        ),
        # not an SDK object: our own private attributes are our business
        ("class A:\n    def f(self):\n        return self._x\n", []),
        ("from shared import edge\nedge._error_response\n", []),
        # public attributes and dunders of SDK objects are fine
        ("import firebase_admin\nfirebase_admin.get_app()\nfirebase_admin.__version__\n", []),
    ],
)
def test_the_scan_finds_private_uses(source: str, expected: list[str]) -> None:
    assert private_uses(source) == expected


def test_the_bundle_uses_no_private_attribute_of_an_sdk() -> None:
    bundle = modules("functions", "shared", "main.py")
    assert len(bundle) > 50  # the scan sees the bundle
    found = {rel(p): uses for p in bundle if (uses := private_uses(p.read_text()))}
    unexpected = {
        path: [u for u in uses if u not in BUNDLE_ALLOWED.get(path, set())]
        for path, uses in found.items()
    }
    assert {path: uses for path, uses in unexpected.items() if uses} == {}


def test_the_tooling_reaches_sdk_private_attributes_through_one_module() -> None:
    tooling = modules("stack", "bench")
    found = {rel(p): uses for p in tooling if (uses := private_uses(p.read_text()))}
    assert TOOLING_FENCE in found  # the fence is where the private uses are
    assert {path: uses for path, uses in found.items() if path != TOOLING_FENCE} == {}
