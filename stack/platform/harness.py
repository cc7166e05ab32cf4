"""Start a real ``pack391 serve`` and wait for its ``ready`` line: the one harness the
tests (tests/stack/serving.py), the benchmarks (bench/stack.py), the rehearsal
(``pack391 rehearse --serve``) and the chaos run (``pack391 chaos-run --serve``) use.

- :func:`spawn_serve`: ``pack391 serve --log-dir DIR`` with an environment, output piped
  (``--no-auth-emulator`` unless asked: the Firebase Auth emulator costs each stack about
  10 s of a core at start, and only the ops page's sign-in uses it);
- :func:`wait_ready`: what it printed up to its ``ready`` line (:class:`NotReady` when it
  does not become ready in time);
- :func:`stop`: SIGTERM, then SIGKILL;
- :func:`serve_stack`: all three on free ports, yielding the stack's handle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from stack.platform.handle import StackHandle
from stack.platform.procs import free_port

SOURCE_DIR = Path(__file__).resolve().parents[2]
"""The source directory: where ``pack391 serve`` runs (it finds main.py there)."""

PACK391 = Path(sys.executable).with_name("pack391")
"""The ``pack391`` CLI of this interpreter's venv (``make setup`` installs it)."""


class NotReady(RuntimeError):
    """``pack391 serve`` exited or timed out before its ``ready`` line."""

    def __init__(self, output: list[str]) -> None:
        super().__init__("pack391 serve did not become ready:\n" + "".join(output[-40:]))
        self.output = output


def spawn_serve(
    env: Mapping[str, str], log_dir: Path, auth_emulator: bool = False
) -> subprocess.Popen[str]:
    """``pack391 serve --log-dir log_dir`` with ``env``, its output (stderr too) piped; with
    the Firebase Auth emulator only when ``auth_emulator`` (opt-in: see the module's doc)."""
    argv = [str(PACK391), "serve", "--log-dir", str(log_dir)]
    if not auth_emulator:
        argv.append("--no-auth-emulator")
    return subprocess.Popen(
        argv,
        cwd=SOURCE_DIR,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(process: subprocess.Popen[str], timeout_sec: float) -> list[str]:
    """The lines ``process`` printed up to and including its ``ready`` line; NotReady (with
    them) when its output ends or ``timeout_sec`` passes first."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_sec
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready" in line:
            return lines
    raise NotReady(lines)


def stop(process: subprocess.Popen[str], grace_sec: float = 30.0) -> None:
    """SIGTERM (the supervisor stops its children), SIGKILL after ``grace_sec``; close its
    output pipe."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_sec)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        with contextlib.suppress(ValueError, OSError):
            process.stdout.close()


def drain(pipe: IO[str]) -> None:
    """Read ``pipe`` to its end in a daemon thread, so the supervisor never blocks on a full
    pipe."""

    def _read(stream: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            for _ in stream:
                pass

    threading.Thread(target=_read, args=(pipe,), daemon=True).start()


@contextlib.contextmanager
def serve_stack(
    log_dir: Path, state_path: Path, timeout_sec: float = 180.0, auth_emulator: bool = False
) -> Iterator[StackHandle]:
    """Start ``pack391 serve`` on free ports (state in ``state_path``; the Auth emulator only
    when ``auth_emulator``); yield its ``StackHandle``; stop it (SIGTERM, then SIGKILL) on
    exit."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL", "GCLOUD_PROJECT")
    }
    env.update(
        # the stack as `make run` runs it (the tests' own process turns the fast canary
        # judge's timers off; a served stack keeps them)
        PACK391_CANARY_FAST_JUDGE="true",
        PACK391_PORT=str(free_port()),
        PACK391_SANDBOX_PORT=str(free_port()),
        PACK391_STACK_STATE=str(state_path),
    )
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()
    process = spawn_serve(env, log_dir, auth_emulator)
    try:
        deadline = time.monotonic() + timeout_sec
        wait_ready(process, timeout_sec)
        assert process.stdout is not None
        drain(process.stdout)
        while not state_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield StackHandle.load(state_path)
    finally:
        stop(process)
