"""Auto-scaling engine.

An empty face: importing a module of the area (its pure ``policy``, say) loads nothing
else. The callables are in :mod:`functions.scaling.edges`, what they are wired to in
:mod:`functions.scaling.wiring`."""
