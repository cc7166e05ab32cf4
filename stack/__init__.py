"""The local stack and the ``pack391`` CLI: emulator, Redis, functions server, scheduler.

Development tooling only; not uploaded by ``firebase deploy`` (see firebase.json).
"""
