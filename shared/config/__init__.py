"""Deploy-time settings: Firebase params read from the environment.

Each setting is a ``firebase_functions.params`` object, so ``firebase deploy``
lists it in the manifest and asks for a value (or takes it from ``.env``); at run
time ``.value`` reads the environment and falls back to the local default.
Spec numbers are not settings: they live in :mod:`shared.thresholds`.

One module per area (:mod:`~shared.config.backup`, :mod:`~shared.config.ddos`,
:mod:`~shared.config.scaling`, :mod:`~shared.config.deploy`, :mod:`~shared.config.ops`,
:mod:`~shared.config.load`, :mod:`~shared.config.market`, :mod:`~shared.config.slo`) and
:mod:`~shared.config.common` for what they share; every name is re-exported here
(``from shared.config import X``).

Pure: the params are the SDK's declarations of settings, and load no client library.
"""

from __future__ import annotations

# The order of these imports is the order the params are declared in, which is their
# order in the deploy manifest and in .env.example (`pack391 deploy env --example`).
# isort: off
from shared.config.common import *  # noqa: F403
from shared.config.backup import *  # noqa: F403
from shared.config.ddos import *  # noqa: F403
from shared.config.scaling import *  # noqa: F403
from shared.config.deploy import *  # noqa: F403
from shared.config.ops import *  # noqa: F403
from shared.config.load import *  # noqa: F403
from shared.config.market import *  # noqa: F403
from shared.config.slo import *  # noqa: F403

# isort: on
