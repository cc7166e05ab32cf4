"""The local platform as a whole, from outside: one harness (:mod:`stack.platform.harness`)
that starts a real ``pack391 serve`` and waits for it, used by the tests, the benchmarks,
the rehearsal and the chaos run alike.

Its processes are here too: :mod:`stack.platform.procs` (spawn, watch and stop a child),
:mod:`stack.platform.logs` (the children's capped logs), :mod:`stack.platform.datastores`
(the Firestore emulator, redis-server and the latency proxy, with their readiness checks)
and :mod:`stack.platform.supervisor` (the children of ``pack391 serve``, restarted when
they die). The other parts (ports, server, scheduler, tokens, front door, world) are
still flat modules of ``stack/``.
"""
