"""One alert model for every area.

- :mod:`shared.alerts.policy`: pure decisions (what a raise, resolve or acknowledgement
  does to an alert, notification text and retry rule) and :class:`AlertSpec`;
- :mod:`shared.alerts.changes`: raising and resolving, deduplicated race-free by key in one
  transaction (``pack391_alerts``, ``pack391_alert_keys``);
- :mod:`shared.alerts.store`: the store every area uses: raise, resolve, acknowledge, the
  reads and the notifications' bookkeeping;
- :mod:`shared.alerts.notifier`: the webhook and the delivery loop the ops scheduled
  function runs for every area's alerts.
"""
