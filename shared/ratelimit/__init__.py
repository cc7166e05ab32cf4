"""Traffic protection shared by every callable: GCRA limits per endpoint class,
per user and per client IP, block lists, panic passes, DDoS mode and geo rules.

Modules: ``policy`` (classes, limits, reasons: pure), ``gcra`` (the algorithm,
pure), ``client`` (IP/country behind trusted proxies), ``keys`` (Redis names),
``geo`` (cached country rules), ``limiter`` (the one-round-trip decision) and
``middleware`` (``@rate_limited`` and ``enforce`` for edges).
"""
