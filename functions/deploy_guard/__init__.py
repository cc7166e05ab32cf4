"""Zero-downtime deployment guard.

An empty face: importing a module of the area (its pure ``policy``, say) loads nothing
else. The callables are in :mod:`functions.deploy_guard.edges`, what they are wired to in
:mod:`functions.deploy_guard.wiring`."""
