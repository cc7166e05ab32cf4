"""The functions manifest, read as the Firebase CLI reads it (discovery), and its params."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
import yaml

SOURCE_DIR = Path(__file__).resolve().parents[2]
"""The functions source directory (firebase.json ``source: "."``): where the CLI looks for
its dotenv files."""

# ------------------------------------------------------------------ the manifest


def read_manifest(
    source_dir: Path = SOURCE_DIR,
    python: str = sys.executable,
    timeout: float = 60.0,
    env_file_values: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The functions manifest, read as the Firebase CLI reads it: the SDK's
    ``firebase_functions.private.serving`` run in the source directory with ``ADMIN_PORT``,
    then ``GET /__/functions.yaml`` and ``/__/quitquitquit``.

    The discovery process gets this process's environment without REDIS_URL, the emulator
    hosts and any ``PACK391_*`` (a shell's stray values must not shape it), plus
    ``env_file_values``: what ``firebase deploy`` merges in from the dotenv files
    (``prepare.js`` passes ``loadUserEnvs`` to ``discoverBuild``). RuntimeError (with the
    server's log) when discovery fails."""
    from stack.platform.procs import free_port

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "REDIS_URL") and not k.startswith("PACK391_")
    }
    env.update(env_file_values or {})
    env["ADMIN_PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [python, "-m", "firebase_functions.private.serving"],
            cwd=source_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    response = requests.get(f"{base}/__/functions.yaml", timeout=(2, 30))
                    break
                except (requests.ConnectionError, requests.Timeout):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(
                            "the functions manifest server did not start:\n"
                            + log.read().decode(errors="replace")
                        ) from None
                    time.sleep(0.2)
            if response.status_code != 200:
                requests.get(f"{base}/__/quitquitquit", timeout=5)
                proc.wait(10)
                log.seek(0)
                raise RuntimeError(
                    f"GET /__/functions.yaml: HTTP {response.status_code}:\n"
                    + log.read().decode(errors="replace")[-3000:]
                )
            manifest: dict[str, Any] = yaml.safe_load(response.text)
            requests.get(f"{base}/__/quitquitquit", timeout=5)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return manifest


def manifest_params(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The manifest's params, in declaration order."""
    return list(manifest.get("params") or [])
