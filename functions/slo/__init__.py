"""Service-level objectives and the error budgets that act.

An empty face: importing a module of the area loads nothing else. The ``pack391_*``
functions are in :mod:`functions.slo.edges`, the pure decisions in
:mod:`functions.slo.policy`, the run in :mod:`functions.slo.service`."""
