"""The children of ``pack391 serve`` under supervision: each with its port and how to
start it again; a dead one restarted (within a limit), a stray stopped one woken, all
stopped on exit. :class:`stack.cli.serve.Stack` starts them and writes the state file.

Children are started and restarted from the thread that calls
:meth:`Supervisor.restart_dead` (the main thread): their parent-death signal follows the
forking thread."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from stack.platform import auth_emulator, datastores, procs

RESTART_LIMIT = 5
"""A child that dies this many times within RESTART_WINDOW_SEC is not restarted again."""
RESTART_WINDOW_SEC = 60.0


@dataclass
class Supervised:
    """A child, its port and how to start it again (None: a death stops the stack);
    ``keep_data``: its data directory outlives a restart (a Redis Cluster node rejoins
    from its ``nodes.conf``)."""

    child: procs.Child
    port: int | None
    restart: Callable[[], procs.Child] | None
    keep_data: bool = False
    restarts: list[float] = field(default_factory=list)
    stopped_since: float | None = None


class Supervisor:
    """The supervised children by name, in the order they were started."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.supervised: dict[str, Supervised] = {}

    @property
    def children(self) -> list[procs.Child]:
        return [s.child for s in self.supervised.values()]

    def add(
        self,
        child: procs.Child,
        port: int | None,
        restart: Callable[[], procs.Child] | None,
        keep_data: bool = False,
    ) -> None:
        self.supervised[child.name] = Supervised(child, port, restart, keep_data)

    def redis_restarter(self, port: int) -> Callable[[], procs.Child]:
        """Redis again on ``port``, empty (as a Memorystore basic-tier restart)."""

        def restart() -> procs.Child:
            return datastores.start_redis(self.log_dir, port=port, append=True)[0]

        return restart

    def cluster_node_restarter(self, name: str, argv: list[str]) -> Callable[[], procs.Child]:
        """A Redis Cluster node again with its argv (its ports and data directory): it
        rejoins the cluster with its slots, empty (a Memorystore node replacement). Add it
        with ``keep_data``."""

        def restart() -> procs.Child:
            return datastores.relaunch_redis_cluster_node(self.log_dir, name, argv, True).wait()

        return restart

    def proxy_restarter(
        self, upstream: int, listen: int, control: int
    ) -> Callable[[], procs.Child]:
        """The Redis latency proxy again on its ports."""

        def restart() -> procs.Child:
            return datastores.start_latency_proxy(self.log_dir, upstream, listen, control, True)[0]

        return restart

    def auth_emulator_restarter(self, project: str, port: int) -> Callable[[], procs.Child]:
        """The Auth emulator again on ``port``, with no users (it keeps them in memory)."""

        def restart() -> procs.Child:
            return auth_emulator.start_auth_emulator(project, self.log_dir, port, append=True)[0]

        return restart

    def stop_all(self) -> None:
        """Stop every child, the last started first."""
        for supervised in reversed(list(self.supervised.values())):
            supervised.child.stop()
        self.supervised.clear()

    def restart_dead(
        self,
        stopping: Callable[[], bool],
        restarted: Callable[[], None],
        held: Callable[[], Collection[str]] = tuple,
    ) -> str | None:
        """Restart the dead children (a line on stdout and a call of ``restarted`` each)
        but those a fault holds down (``held()``: child names, read when one is found
        dead); a message when the stack must stop (a child that cannot be restarted, or one
        that died too often)."""
        for name, sup in list(self.supervised.items()):
            code = sup.child.process.poll()
            if code is None or stopping() or name in held():
                continue
            if sup.restart is None:
                return (
                    f"the {name} exited ({code}). It kept its data only in memory, so "
                    "that data is gone: stopping the stack (run `make run` again).\n"
                    f"{sup.child.log_tail()}"
                )
            now = time.monotonic()
            sup.restarts = [t for t in sup.restarts if now - t < RESTART_WINDOW_SEC]
            if len(sup.restarts) >= RESTART_LIMIT:
                return (
                    f"{name} exited ({code}) {RESTART_LIMIT} times within "
                    f"{RESTART_WINDOW_SEC:.0f}s: not restarting it again\n{sup.child.log_tail()}"
                )
            if sup.keep_data:  # its restart starts from its data directory
                sup.child.cleanup.clear()
            sup.child.stop()  # its leftovers (Redis: the data directory) go too
            try:
                sup.child = sup.restart()
            except procs.StackError as exc:
                if stopping():  # Ctrl-C during the restart: a normal stop
                    return None
                return f"could not restart {name}: {exc}"
            sup.restarts.append(now)
            took = time.monotonic() - now
            restarted()  # the state file first: whoever reads the line finds the new child
            print(f"restarted {name} (exit {code}) in {took:.1f}s", flush=True)
        return None

    def wake_stopped(self, leased: Collection[int], grace_sec: float) -> None:
        """SIGCONT a child left stopped (state ``T``) for ``grace_sec`` with no fault lease
        on its pid."""
        now = time.monotonic()
        me = os.getpid()
        for name, sup in self.supervised.items():
            pid = sup.child.process.pid
            # A child found dead (and reaped) and not restarted yet (a fault holds it
            # down): its pid is free, and may be another process's by now (pid_max is
            # 32768 here), stopped on purpose by someone else. Only a live child of ours.
            stat = None if sup.child.process.poll() is not None else procs.process_stat(pid)
            if stat is None or stat[0] != "T" or stat[1] != me or pid in leased:
                sup.stopped_since = None
                continue
            if sup.stopped_since is None:
                sup.stopped_since = now
            elif now - sup.stopped_since >= grace_sec:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)
                sup.stopped_since = None
                print(f"pack391 serve: woke {name} (stopped with no fault lease)", flush=True)
