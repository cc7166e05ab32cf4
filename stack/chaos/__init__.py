"""``pack391 chaos-run``: each fault applied during a load run, the invariants checked.

- :mod:`stack.chaos.faults`: the faults, a table of objects that apply and undo
  (``pack391 chaos FAULT`` applies one), their leases and :func:`~stack.chaos.faults.inject`.
- :mod:`stack.chaos.config`: the faults in order, their markets, the load and budgets.
- :mod:`stack.chaos.recorder`: the load of one scenario, every request recorded.
- :mod:`stack.chaos.backends`: direct reads of Firestore and Redis after recovery.
- :mod:`stack.chaos.runner`: one scenario per fault, checked; the run and its report file.
- :mod:`stack.chaos.report`: the report as readable text.
- :mod:`stack.chaos.budgets`: each function's budget with the stack's params (what every
  recorded call's answer time is held to).
- :mod:`stack.chaos.probe`: what ``pack391 chaos FAULT`` calls while the fault is on.
- :mod:`stack.cli.chaos_run`: ``pack391 chaos-run [--faults ...] [--serve]``, the command.

The invariants are :mod:`stack.chaos_check`; the stack a ``--serve`` run starts is the platform's
harness (:mod:`stack.platform.harness`).
"""
