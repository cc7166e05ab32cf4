"""Cap the logs of the local stack's children.

A child's output goes to ``LOG_DIR/NAME.log``, opened in append mode, and is capped:
every ``STACK_LOG_CHECK_SEC`` a file over ``STACK_LOG_MAX_BYTES`` is copied to
``NAME.log.1`` (replacing the previous one) and truncated in place (logrotate's
``copytruncate``: the child keeps writing to the same descriptor, at the new end), so
a long or loud run never fills the disk. Lines written between the copy and the
truncation are lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from stack.constants import STACK_LOG_CHECK_SEC


def rotated_path(log_path: Path) -> Path:
    """Where a capped log's previous contents go: ``NAME.log.1``."""
    return log_path.with_name(log_path.name + ".1")


def cap_log(log_path: Path, max_bytes: int) -> bool:
    """Rotate ``log_path`` when it is over ``max_bytes`` (copy to ``NAME.log.1``, truncate
    in place); True when it did."""
    try:
        if log_path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(log_path, rotated_path(log_path))
        os.truncate(log_path, 0)
    except OSError:
        return False
    return True


class LogCapper:
    """A daemon thread keeping the logs of running children under their cap."""

    def __init__(self, every_sec: float = STACK_LOG_CHECK_SEC) -> None:
        self.every_sec = every_sec
        self._watched: dict[Path, tuple[subprocess.Popen[bytes], int]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, log_path: Path, process: subprocess.Popen[bytes], max_bytes: int) -> None:
        with self._lock:
            self._watched[log_path] = (process, max_bytes)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="pack391-log-cap", daemon=True
                )
                self._thread.start()

    def check_once(self) -> list[Path]:
        """Rotate every watched log over its cap; forget those of exited children."""
        rotated = []
        with self._lock:
            watched = list(self._watched.items())
        for path, (process, max_bytes) in watched:
            if cap_log(path, max_bytes):
                rotated.append(path)
            if process.poll() is not None:
                with self._lock:
                    if self._watched.get(path, (None, 0))[0] is process:
                        del self._watched[path]
        return rotated

    def _loop(self) -> None:
        while True:
            time.sleep(self.every_sec)
            self.check_once()


LOG_CAPPER = LogCapper()
"""The one capper of this process's children's logs."""
