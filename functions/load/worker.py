"""A local shard worker: ``python -m functions.load.worker '{"runId", "shard", "startAt"}'``.

The local dispatcher starts one per shard; it calls the shard executor directly, as
Cloud Tasks calls ``pack391ExecuteLoadTest`` in production.
"""

from __future__ import annotations

import json
import logging
import sys

from shared.config import project_id
from shared.firestore import ensure_admin_app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    ensure_admin_app(project_id())
    from functions.load.edges import execute_shard

    print(json.dumps(execute_shard(json.loads(sys.argv[1]))), flush=True)


if __name__ == "__main__":
    main()
