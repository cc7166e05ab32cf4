"""``pack391 bootstrap PROJECT``'s runner (the command: :mod:`stack.cli.bootstrap`): the
steps of the plan, :func:`stack.release.bootstrap_plan.plan`, run as ``gcloud`` (and one
``firebase``) commands.

:func:`run` executes the steps of one phase in order and stops at the first failure (a
step that creates something counts "already exists" as done, so a second run goes
through); :func:`project_number` reads the project's number. docs/bootstrap.md walks
through the plan.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence

from stack.release.bootstrap_plan import (
    PROJECT_NUMBER_RE,
    BootstrapError,
    Phase,
    Step,
)

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_process(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def run(steps: Sequence[Step], phase: Phase, runner: Runner = run_process) -> int:
    """Run the steps of ``phase`` in order; stop at the first failure (exit 1)."""
    for step in (s for s in steps if s.phase == phase):
        print(step.render(), flush=True)
        done = runner(step.argv)
        if done.returncode != 0:
            said = (done.stderr or "") + (done.stdout or "")
            if step.creates and "already exists" in said.lower():
                print("(already exists)", flush=True)
                continue
            print(said.strip(), file=sys.stderr)
            print(f"pack391 bootstrap: failed: {shlex.join(step.argv)}", file=sys.stderr)
            return 1
    return 0


def project_number(project: str, runner: Runner) -> str:
    done = runner(("gcloud", "projects", "describe", project, "--format=value(projectNumber)"))
    number = (done.stdout or "").strip()
    if done.returncode != 0 or not PROJECT_NUMBER_RE.match(number):
        raise BootstrapError(
            "--project-number", f"could not read it: {(done.stderr or '').strip()}"
        )
    return number
