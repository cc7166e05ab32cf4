"""The local platform as a whole, from outside: one harness (:mod:`stack.platform.harness`)
that starts a real ``pack391 serve`` and waits for it, used by the tests, the benchmarks,
the rehearsal and the chaos run alike.

The platform's parts (processes, ports, server, scheduler, tokens, front door, world) are
still the flat modules of ``stack/`` (``stack/procs.py`` ...).
"""
