"""Ops dashboard (pack391-ops).

An empty face: importing a module of the area (its pure ``policy``, say) loads nothing
else. The callables are in :mod:`functions.ops.edges`, what they are wired to in
:mod:`functions.ops.wiring`."""
