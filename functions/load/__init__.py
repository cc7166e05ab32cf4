"""Load & stress testing: the callables are in :mod:`functions.load.edges`, what they are
wired to in :mod:`functions.load.wiring`; the engine (:mod:`functions.load.engine`) loads
neither, so the ``pack391 loadtest`` workers and the CLI pay for no Firebase import."""
