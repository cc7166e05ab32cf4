"""The dotenv dialect of firebase-tools (``lib/functions/env.js``): parse, check a key,
format a value."""

from __future__ import annotations

import re

# ------------------------------------------------------------------ dotenv (env.js)

_LINE_RE = re.compile(
    r"^\s*(?:export)?\s*([\w./]+)\s*=[\f\t\v]*"
    r"(\s*'(?:\\'|[^'])*'|\s*\"(?:\\\"|[^\"])*\"|[^#\r\n]*)?"
    r"\s*(?:#[^\n]*)?$",
    re.M | re.S | re.ASCII,
)
"""``LINE_RE`` of firebase-tools ``lib/functions/env.js`` (flags ``gms``; JavaScript's
``\\w`` is ASCII-only)."""

_ESCAPES = {
    "\\n": "\n",
    "\\r": "\r",
    "\\t": "\t",
    "\\v": "\v",
    "\\\\": "\\",
    "\\'": "'",
    '\\"': '"',
}
_UNESCAPE_RE = re.compile(r"\\[nrtv\\'\"]")
_ESCAPE_CHARS = {v: k for k, v in _ESCAPES.items()}
_ESCAPE_RE = re.compile(r"[\n\r\t\v\\'\"]")
_PLAIN_CHARS = r"A-Za-z0-9_\-./:@%+,=\[\]{}*?!~^&$()|;<>"
_PLAIN_VALUE = re.compile(rf"[{_PLAIN_CHARS}][{_PLAIN_CHARS}\"]*")
"""Written unquoted: no whitespace, ``#``, backslash or single quote anywhere, and no quote
first (``env.js`` would take a leading quote for a quoted value)."""

RESERVED_KEYS = frozenset(
    {
        "FIREBASE_CONFIG",
        "CLOUD_RUNTIME_CONFIG",
        "EVENTARC_CLOUD_EVENT_SOURCE",
        "ENTRY_POINT",
        "GCP_PROJECT",
        "GCLOUD_PROJECT",
        "GOOGLE_CLOUD_PROJECT",
        "FUNCTION_TRIGGER_TYPE",
        "FUNCTION_NAME",
        "FUNCTION_MEMORY_MB",
        "FUNCTION_TIMEOUT_SEC",
        "FUNCTION_IDENTITY",
        "FUNCTION_REGION",
        "FUNCTION_TARGET",
        "FUNCTION_SIGNATURE_TYPE",
        "K_SERVICE",
        "K_REVISION",
        "PORT",
        "K_CONFIGURATION",
    }
)
RESERVED_PREFIXES = ("X_GOOGLE_", "FIREBASE_", "EXT_", "KIT_")
"""``validateKey`` of env.js: keys a dotenv file may not set."""


def parse_dotenv(data: str) -> dict[str, str]:
    """``parseStrict`` of env.js: the key/value pairs of a dotenv file; ValueError on a line
    that is neither a pair, a comment nor blank, or on a key the CLI refuses."""
    data = re.sub(r"\r\n?", "\n", data, count=1)  # sic: env.js replaces the first only
    envs: dict[str, str] = {}
    for match in _LINE_RE.finditer(data):
        key, value = match.group(1), (match.group(2) or "").strip()
        quoted = re.search(r"^([\"'])(.*)\1$", value, re.M | re.S)
        if quoted:
            value = quoted.group(2)
            if quoted.group(1) == '"':
                value = _UNESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], value)
        envs[key] = value
    errors = [
        line.strip()
        for line in re.split(r"[\r\n]+", _LINE_RE.sub("", data))
        if line.strip() and not line.strip().startswith("#")
    ]
    if errors:
        raise ValueError(f"Invalid dotenv file, error on lines: {','.join(errors)}")
    for key in envs:
        problem = key_problem(key)
        if problem:
            raise ValueError(problem)
    return envs


def key_problem(key: str) -> str | None:
    """Why env.js's ``validateKey`` refuses ``key`` in a dotenv file, or None."""
    if key in RESERVED_KEYS:
        return f"{key} is reserved for internal use"
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
        return f"{key} must be upper-case letters, digits and underscores"
    if key.startswith(RESERVED_PREFIXES) and not key.startswith("FIREBASE_SECRET_REF_"):
        return f"{key} starts with a reserved prefix ({' '.join(RESERVED_PREFIXES)})"
    return None


def format_value(value: str) -> str:
    """``value`` as a dotenv value env.js reads back exactly."""
    if _PLAIN_VALUE.fullmatch(value):
        return value
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPE_CHARS[m.group()], value) + '"'
