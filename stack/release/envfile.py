"""Each param's value for ``.env.<projectId>``: resolved from the repository variables
or its default, checked against its type, rendered (and the ``.env.example`` template)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stack.release.dotenv import format_value, key_problem, parse_dotenv

MAX_SAFE_INTEGER = 2**53 - 1
"""The CLI reads an int param as a JavaScript number."""


class ParamError(ValueError):
    """The env file cannot be written: one line per offending param, each naming it."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Resolved:
    """One param's line in the env file."""

    name: str
    type: str
    raw: str
    """The value as written (before dotenv quoting)."""
    source: str
    """``variable`` or ``default``."""


def _is_cel(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value and "}}" in value


def _canonical(param: Mapping[str, Any], value: Any) -> str:
    """The written form of ``value`` for ``param``; ValueError saying why it is refused."""
    kind = param.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"not a string: {value!r}")
        raw = value
    elif kind == "int":
        text = value if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        if text is None or not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError(f"not an integer: {value!r}")
        if abs(int(text)) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer out of range: {value!r}")
        raw = str(int(text))
    elif kind == "boolean":
        if isinstance(value, bool):
            raw = "true" if value else "false"
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            raw = value.lower()
        else:
            raise ValueError(f"not true or false: {value!r}")
    elif kind == "list":
        items: Any = value
        if isinstance(value, str):
            if value.strip().startswith("["):
                try:
                    items = json.loads(value)
                except ValueError:
                    raise ValueError(f"not a JSON array: {value!r}") from None
            else:  # comma-separated, empty items dropped (the Python SDK's reading)
                items = [item for item in value.split(",") if item]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"not a list of strings: {value!r}")
        if any("'" in item for item in items):
            raise ValueError("an item holds a single quote (the CLI reads ' as \")")
        raw = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    else:
        raise ValueError(f"type {kind!r} cannot be written to an env file")
    _check_input(param, raw if kind != "list" else items, kind)
    return raw


def _check_input(param: Mapping[str, Any], value: Any, kind: Any) -> None:
    """A select input's options and a text input's validation regex, when declared."""
    spec = param.get("input") or {}
    select = spec.get("select")
    if select and kind != "list":
        options = [str(o.get("value")).lower() if kind == "boolean" else str(o.get("value"))
                   for o in select.get("options", [])]  # fmt: skip
        if str(value) not in options:
            raise ValueError(f"{value!r} is not one of {options}")
    multi = spec.get("multiSelect")
    if multi and kind == "list":
        options = [str(o.get("value")) for o in multi.get("options", [])]
        bad = [item for item in value if item not in options]
        if bad:
            raise ValueError(f"{bad} not among {options}")
    text = spec.get("text") or {}
    regex = text.get("validationRegex")
    if regex and kind != "list" and not re.search(regex, str(value)):
        raise ValueError(text.get("validationErrorMessage") or f"does not match {regex}")


def resolve(params: Sequence[Mapping[str, Any]], variables: Mapping[str, str]) -> list[Resolved]:
    """Every non-secret param's value: its variable when given (non-empty), else its
    default. ParamError naming each param that has neither, whose value its type rejects,
    whose name a dotenv file may not hold, or that is a secret given as a variable."""
    problems: list[str] = []
    out: list[Resolved] = []
    for param in params:
        name = str(param.get("name"))
        kind = param.get("type")
        given = variables.get(name, "")
        if kind == "secret":
            if given:
                problems.append(
                    f"{name}: a secret, never written to an env file; remove the variable and "
                    f"store it in Secret Manager (firebase functions:secrets:set {name})"
                )
            continue
        problem = key_problem(name)
        if problem:
            problems.append(f"{name}: the CLI refuses this name in a dotenv file: {problem}")
            continue
        if given:
            value: Any = given
            source = "variable"
        elif param.get("default") is not None:
            value = param["default"]
            source = "default"
            if _is_cel(value):
                problems.append(
                    f"{name}: its default is an expression ({value}); set the variable {name}"
                )
                continue
        else:
            problems.append(f"{name}: no value and no default; set the variable {name}")
            continue
        try:
            raw = _canonical(param, value)
        except ValueError as exc:
            problems.append(f"{name} ({kind}, from its {source}): {exc}")
            continue
        out.append(Resolved(name, str(kind), raw, source))
    if problems:
        raise ParamError(problems)
    return out


def render(resolved: Sequence[Resolved], project: str) -> str:
    """The env file's text; checked to read back exactly (``parse_dotenv``)."""
    lines = [
        f"# .env.{project}: generated by `pack391 deploy env` from the functions manifest,",
        "# repository variables and the params' defaults. Do not edit; do not commit.",
    ]
    for item in resolved:
        lines.append(f"# {item.name} ({item.type}, {item.source})")
        lines.append(f"{item.name}={format_value(item.raw)}")
    text = "\n".join(lines) + "\n"
    back = parse_dotenv(text)
    expected = {item.name: item.raw for item in resolved}
    if back != expected:  # a value this writer cannot express: refuse rather than write it
        wrong = sorted(k for k in expected if back.get(k) != expected[k])
        raise ParamError([f"{name}: does not read back from a dotenv file" for name in wrong])
    return text


def template(params: Sequence[Mapping[str, Any]]) -> str:
    """``.env.example``: every param of the manifest with its label, description and default;
    secrets as comments."""
    lines = [
        "# Every param of the functions manifest, with its committed default.",
        "# Deploys write .env.<projectId> with `./venv/bin/pack391 deploy env --project ID`",
        "# (repository variables of the params' own names override these defaults);",
        "# regenerate this file with `./venv/bin/pack391 deploy env --example > .env.example`.",
    ]
    for param in params:
        name = str(param.get("name"))
        lines.append("")
        lines.append(f"# {param.get('label') or name} ({param.get('type')})")
        for chunk in _wrap(str(param.get("description") or "")):
            lines.append(f"#   {chunk}")
        if param.get("type") == "secret":
            lines.append(f"# {name}: Secret Manager: firebase functions:secrets:set {name}")
        elif param.get("default") is None:
            lines.append(f"# {name}: no default, set it")
        else:
            raw = _canonical(param, param["default"])
            lines.append(f"{name}={format_value(raw)}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 88) -> list[str]:
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


def json_variables(environ: Mapping[str, str], json_env: str | None) -> dict[str, str]:
    """The JSON object in ``environ[json_env]`` (e.g. GitHub's ``toJSON(vars)``)."""
    if not json_env:
        return {}
    text = environ.get(json_env, "")
    loaded = json.loads(text) if text.strip() else {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{json_env} does not hold a JSON object")
    return {str(k): str(v) for k, v in loaded.items() if v is not None}


def variables_from(environ: Mapping[str, str], json_env: str | None) -> dict[str, str]:
    """The variable set: the JSON object of ``json_env``, overridden by (non-empty)
    environment variables of the same names."""
    return {**json_variables(environ, json_env), **{k: v for k, v in environ.items() if v}}
