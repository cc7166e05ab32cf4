"""``pack391 chaos-run``: each fault applied during a load run, the invariants checked.

- :mod:`stack.chaos.config`: the faults in order, their markets, the load and budgets.
- :mod:`stack.chaos.recorder`: the load of one scenario, every request recorded.
- :mod:`stack.chaos.backends`: direct reads of Firestore and Redis after recovery.
- :mod:`stack.chaos.runner`: one scenario per fault, checked; the run and its report file.
- :mod:`stack.chaos.report`: the report as readable text.
- :mod:`stack.chaos.cli`: ``pack391 chaos-run [--faults ...] [--serve]``.

The faults themselves are :mod:`stack.faults` (``pack391 chaos FAULT`` applies one), the
invariants :mod:`stack.chaos_check`; the stack a ``--serve`` run starts is the platform's
harness (:mod:`stack.platform.harness`).
"""
