"""The ``pack391`` command: run the local stack and talk to it.

    pack391 serve                       the local stack (what `make run` runs)
    pack391 token --role admin          an ID token the local stack accepts
    pack391 grant --role ops EMAIL      a staff role as a custom claim (local Auth emulator,
                                        or --project PROJECT), audited; --revoke undoes it
    pack391 call NAME '{"json": 1}'     call a callable, print its result
    pack391 trigger NAME                run a scheduled function now
    pack391 backup | verify | restore | drill
                                        logical backups of the local stack's Firestore;
                                        drill: RTO and the data gates on the restored copy
    pack391 deploy validate|pin-traffic|start|status|wait|rollback|control|token|local-revision
                   |env|secrets   (env: .env.<project> for firebase deploy; secrets: check them)
                                        the deploy guard (local stack, or a deployed
                                        project with PACK391_FUNCTIONS_URL + PACK391_ID_TOKEN)
    pack391 seed-ops --firestore H:P    seed the ops dashboard's source collections
    pack391 loadtest SCENARIO           a load-test scenario from this machine (CI gate)
    pack391 chaos FAULT [--for S]       apply a fault to the running stack for S seconds
    pack391 migrate-alerts              older alert collections into pack391_alerts
    pack391 rehearse                    launch day on the local stack, every claim judged
    pack391 bootstrap PROJECT           a real project, once: APIs, accounts, least privilege

Environment: PACK391_PORT (5001), GCLOUD_PROJECT (demo-avalo), PACK391_REGION
(us-central1), FIRESTORE_EMULATOR_HOST and REDIS_URL (reuse running servers),
FIRESTORE_EMULATOR_JAR (where the emulator jar is). backup, verify, restore and drill need
FIRESTORE_EMULATOR_HOST and read the PACK391_BACKUP_* settings the functions use.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stack.platform import procs

# How a command group is registered: a module with ``add_parser(subparsers)`` that adds
# its command(s) to ``subparsers`` (``subparsers.add_parser(NAME, ...)``, its flags, and
# ``set_defaults(func=cmd_...)`` where ``cmd_...(args: argparse.Namespace) -> int``
# returns the exit code), listed below in the order of ``pack391 --help``, with the
# commands it adds. A new group is a new module under stack/cli/ plus one line here: every
# parser of stack/ is built in stack/cli/ (the command modules here, the processes'
# entry points in stack.cli.processes; tests/stack/test_cli_one_place.py checks it), and
# a command module holds only the glue from arguments to the calls of the module that
# does the work, imported in its handler. ``pack391 COMMAND`` imports only COMMAND's
# module (tests/stack/test_cli_dispatch.py checks the names and what a command loads);
# ``pack391 --help`` and a mistyped command import them all. Calls to functions go
# through stack.cli.caller.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "stack.cli.serve": ("serve",),  # the local stack's supervisor
    "stack.cli.call": ("token", "call"),
    "stack.cli.grant": ("grant",),  # a staff role (custom claim) for a user, audited
    "stack.cli.trigger": ("trigger",),
    "stack.cli.backup": ("backup", "verify", "restore", "drill"),
    "stack.cli.deploy": ("deploy",),  # the deploy guard; deploy env/secrets: stack.cli.release
    "stack.cli.ops": ("seed-ops",),
    "stack.cli.loadtest": ("loadtest",),
    "stack.cli.chaos_run": ("chaos-run",),  # each fault during a load run, checked
    "stack.cli.chaos": ("chaos",),  # one fault against the running stack
    "stack.cli.migrate_alerts": ("migrate-alerts",),  # older alert collections, one alert model
    "stack.cli.rehearse": ("rehearse",),  # launch day on the local stack, every claim judged
    "stack.cli.bootstrap": ("bootstrap",),  # a real project, once: APIs, accounts, roles
}
"""The modules whose ``add_parser(subparsers)`` build ``pack391``'s commands, in the order
of ``pack391 --help``, each with the commands it adds."""


def module_of(command: str | None) -> str | None:
    """The module that adds ``command`` (None: not a command of ``pack391``)."""
    return next((m for m, names in COMMAND_GROUPS.items() if command in names), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """``pack391``'s parser: every command, or (``command`` given and known) only the
    commands of its module, so that a run imports what it runs and nothing else."""
    parser = argparse.ArgumentParser(
        prog="pack391",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    only = module_of(command)
    for name in COMMAND_GROUPS if only is None else (only,):
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # the command is the first word (``pack391`` itself takes no option but --help)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    # shared.errors (and through it the Firebase SDK) is imported only when a command
    # needs it: `pack391 loadtest` and its forked workers stay light
    try:
        code: int = args.func(args)
    except procs.StackError as exc:
        print(f"pack391 {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from shared.errors import Pack391Error

        if not isinstance(exc, Pack391Error):
            raise
        print(f"pack391 {args.command}: {exc}", file=sys.stderr)
        return 2
    return code
