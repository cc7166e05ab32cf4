"""Release tooling: what touches a real project, kept apart from the local platform.

Imported only by the ``pack391`` CLI (stack/cli; import-linter's ``release-only-from-cli``),
which builds the commands' parsers: ``pack391 deploy env|secrets|hosting-config`` in
:mod:`stack.cli.release`, ``pack391 bootstrap`` in :mod:`stack.cli.bootstrap`.

- :mod:`stack.release.discovery`: the functions manifest, read as the Firebase CLI reads it.
- :mod:`stack.release.dotenv`: the dotenv dialect of firebase-tools' ``env.js``.
- :mod:`stack.release.envfile`: each param's value resolved, checked and rendered.
- :mod:`stack.release.shape`: the deploy's shape (front door, ingress, Redis, canary services).
- :mod:`stack.release.secret_manager`: the secret params in Secret Manager.
- :mod:`stack.release.hosting_config`: ``pack391 deploy hosting-config``'s two files.
- :mod:`stack.release.bootstrap_plan`: ``pack391 bootstrap``'s plan, pure.
- :mod:`stack.release.bootstrap`: ``pack391 bootstrap``'s runner.
- :mod:`stack.release.permissions`: the API methods the bundle calls and the roles granted.
"""
