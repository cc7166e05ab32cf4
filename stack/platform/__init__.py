"""The local platform as a whole, from outside: one harness (:mod:`stack.platform.harness`)
that starts a real ``pack391 serve`` and waits for it, used by the tests, the benchmarks,
the rehearsal and the chaos run alike.

Its processes are here too: :mod:`stack.platform.procs` (spawn, watch and stop a child),
:mod:`stack.platform.logs` (the children's capped logs), :mod:`stack.platform.datastores`
(the Firestore emulator, redis-server and the latency proxy, with their readiness checks)
and :mod:`stack.platform.supervisor` (the children of ``pack391 serve``, restarted when
they die). And what they run: :mod:`stack.platform.ports` (each stack's block of ports),
:mod:`stack.platform.server` (the functions server), :mod:`stack.platform.scheduler`
(Cloud Scheduler's stand-in), :mod:`stack.platform.tokens` (the emulator's ID tokens),
:mod:`stack.platform.frontdoor` (the stand-in for a deployed front end) and
:mod:`stack.platform.world` (the spec's world, set up once the server is ready).
"""
