"""``pack391 COMMAND`` imports only COMMAND's module (every CLI call in the
suite and in the README used to pay 2.2 s importing all twelve; ``pack391 call --help`` now
takes about 0.2 s, measured in ``make bench-coldstart``)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import pytest

from stack import cli
from tests.conftest import ROOT

LOADED = """\
import json, sys
from stack.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""
"""Runs ``pack391 ARGS`` in a fresh interpreter and prints, last on stderr, its exit code
and every module it loaded."""

HEAVY = ["google.cloud.firestore_v1", "grpc", "aiohttp", "firebase_admin", "apscheduler"]
"""What a one-shot command that only talks HTTP to the stack (call, token, trigger,
deploy, chaos) must not pay for."""


def loaded(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_every_group_registers_exactly_its_commands_in_help_order() -> None:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    choices: dict[str, Any] = sub.choices  # type: ignore[assignment]
    listed = [name for names in cli.COMMAND_GROUPS.values() for name in names]
    assert list(choices) == listed
    assert all(callable(choices[name].get_default("func")) for name in choices)
    for module, names in cli.COMMAND_GROUPS.items():
        (sub,) = [a for a in cli.build_parser(names[0])._actions if a.dest == "command"]
        assert list(sub.choices) == list(names), module  # type: ignore[arg-type]


@pytest.mark.parametrize("command", [n for names in cli.COMMAND_GROUPS.values() for n in names])
def test_the_dispatcher_imports_only_the_commands_module(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[str] = []
    real = importlib.import_module

    def recording(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", recording)
    cli.build_parser(command)
    assert imported == [cli.module_of(command)]


@pytest.mark.parametrize("command", ["call", "deploy"])
def test_a_one_shot_command_loads_no_heavy_client_in_a_fresh_process(command: str) -> None:
    code, modules = loaded(command, "--help")
    assert code == 0
    assert cli.module_of(command) in modules
    assert not {m for m in cli.COMMAND_GROUPS if m != cli.module_of(command)} & modules
    assert not {m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")}


def test_every_command_module_is_under_stack_cli() -> None:
    """The parsers are built in stack/cli/ alone (tests/stack/test_cli_one_place.py): a
    command's module there holds the glue, the module it calls holds the work."""
    assert [m for m in cli.COMMAND_GROUPS if not m.startswith("stack.cli.")] == []


WORK = {
    "loadtest": "stack.loadtest",
    "chaos-run": "stack.chaos.runner",
    "migrate-alerts": "stack.migrate_alerts",
    "grant": "stack.grant",
    "rehearse": "stack.rehearse.cli",
}
"""The module that does a command's work, which its handler imports when it runs."""


@pytest.mark.parametrize("command", sorted(WORK))
def test_a_commands_help_loads_not_the_module_that_does_its_work(command: str) -> None:
    code, modules = loaded(command, "--help")
    assert code == 0
    assert cli.module_of(command) in modules
    assert WORK[command] not in modules


def test_help_and_a_mistyped_command_still_list_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    listing = capsys.readouterr().out
    for names in cli.COMMAND_GROUPS.values():
        assert all(name in listing for name in names)
    with pytest.raises(SystemExit) as typo:
        cli.main(["cal", "x"])
    assert typo.value.code == 2
    said = capsys.readouterr().err
    assert "invalid choice: 'cal'" in said and "'call'" in said
