"""Deploy guard decisions: pure functions of measured numbers, state and ``now``.

One module per concern, each importing no client library:

- :mod:`~functions.deploy_guard.policy.judge`: the canary judge (one window's checks of
  canary against stable; the fast judge's conclusive breaches);
- :mod:`~functions.deploy_guard.policy.phases`: the deployment's state machine (steps,
  rollback, human controls, settling and confirming a final split, the fast judge's ticks);
- :mod:`~functions.deploy_guard.policy.gates`: the six pre-deploy gates and whether a
  report lets a deployment start;
- :mod:`~functions.deploy_guard.policy.alerts`: the alerts a phase change raises or resolves.
"""
