"""Traffic protection (the spec's pack391-ddos).

An empty face: importing a module of the area (its pure ``policy``, say) loads nothing
else. The callables are in :mod:`functions.ddos.edges`, what they are wired to in
:mod:`functions.ddos.wiring`."""
