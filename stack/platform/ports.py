"""Ports for local servers: the kernel's choice, or a range of our own shared safely.

``pack391 serve`` (and whatever it starts) asks :func:`free_port` for a port per server.
Without ``PACK391_PORT_RANGE`` that is the kernel's choice (``bind(0)``, from the
ephemeral range), as before. That choice has two races that parallel test runs hit:

- the port is released before the server binds it, seconds later (a JVM starting), and
  the kernel may hand the same port to another process's ``bind(0)`` in between;
- outgoing connections take their local port from the same ephemeral range, so a client
  socket can occupy the port first.

With ``PACK391_PORT_RANGE=LO-HI`` ports come from that range instead, which should lie
outside the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``) and the ports
the stack and the Firebase CLI use by default (4000-9999), so no client socket lands on
one. Every process using the range (a test worker and the stacks it starts) takes ports
through one cursor file under a file lock, so no two of them are handed the same port
until the range wraps around, and a port still bound is skipped.

:func:`claim_block` gives a test process a range of its own: blocks of
``PORT_BLOCK_SIZE`` in ``PORT_BLOCKS_BASE``.., the first free one from a preferred index
(the xdist worker's number), held by an exclusive lock on a lock file for as long as the
process lives, so concurrent runs (two checkouts, a developer's tests beside CI) get
disjoint blocks too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from pathlib import Path
from typing import IO

PORT_RANGE_ENV = "PACK391_PORT_RANGE"
"""``LO-HI`` (inclusive): where :func:`free_port` takes ports (unset: the kernel's choice)."""

PORT_BLOCKS_BASE = 20000
"""First port of the test blocks: above the stack's and the Firebase CLI's defaults
(5001, 5002, 8080, 9099, 4000-4500, 8085, 9499), below the ephemeral range (32768)."""
PORT_BLOCK_SIZE = 400
PORT_BLOCKS = 30
"""Blocks of :data:`PORT_BLOCK_SIZE` ports: 20000-31999."""

LOCK_DIR_ENV = "PACK391_PORT_LOCK_DIR"
"""Where the cursor and block lock files live (default: ``$TMPDIR/pack391-ports``)."""


class PortsExhausted(RuntimeError):
    """No port of the range could be bound."""


def lock_dir() -> Path:
    path = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "pack391-ports")
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_range(spec: str) -> tuple[int, int]:
    """``"LO-HI"`` as two ints (ValueError naming the variable otherwise)."""
    lo_text, sep, hi_text = spec.partition("-")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        lo, hi = 0, -1
    if not sep or not 1024 <= lo <= hi <= 65535:
        raise ValueError(
            f"{PORT_RANGE_ENV}={spec!r}: expected LO-HI with 1024 <= LO <= HI <= 65535"
        )
    return lo, hi


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound right now (nothing listens or holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def kernel_port(host: str = "127.0.0.1") -> int:
    """A port the kernel picks from its ephemeral range (free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port() -> int:
    """A TCP port on 127.0.0.1 for a server about to start: from ``PACK391_PORT_RANGE``
    through its shared cursor when set, else the kernel's choice."""
    spec = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not spec:
        return kernel_port()
    return take_from(*parse_range(spec))


def take_from(lo: int, hi: int) -> int:
    """The next bindable port of ``lo..hi`` after the range's shared cursor (advanced under
    an exclusive lock, so concurrent processes never get the same one)."""
    size = hi - lo + 1
    with open(lock_dir() / f"range-{lo}-{hi}.cursor", "a+") as cursor:
        fcntl.flock(cursor, fcntl.LOCK_EX)
        cursor.seek(0)
        text = cursor.read().strip()
        at = int(text) if text.isdigit() else 0
        for step in range(size):
            port = lo + (at + step) % size
            if bindable(port):
                cursor.seek(0)
                cursor.truncate()
                cursor.write(str((at + step + 1) % size))
                cursor.flush()
                return port
    raise PortsExhausted(f"every port of {lo}-{hi} is in use")


class Block:
    """A claimed block: its range, held while the lock file stays open."""

    def __init__(self, index: int, handle: IO[str]) -> None:
        self.index = index
        self.lo = PORT_BLOCKS_BASE + index * PORT_BLOCK_SIZE
        self.hi = self.lo + PORT_BLOCK_SIZE - 1
        self._handle = handle

    @property
    def spec(self) -> str:
        return f"{self.lo}-{self.hi}"

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()


def claim_block(preferred: int = 0) -> Block:
    """The first block, from ``preferred`` on, that no other live process holds."""
    for step in range(PORT_BLOCKS):
        index = (preferred + step) % PORT_BLOCKS
        handle = open(lock_dir() / f"block-{index}.lock", "a+")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return Block(index, handle)
    raise PortsExhausted(f"all {PORT_BLOCKS} port blocks are held by other processes")
