"""Where a logical backup's regional copy is written: a directory, or a ``gs://`` prefix.

Both hold named objects (``<backupId>/parts/...``, ``<backupId>/manifest.json``); a
write is all-or-nothing (a temporary file renamed into place, or one Cloud Storage
upload), so a reader never sees half an object.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc

from functions.backup.ports import BackupDestination
from shared.gcp import budget

STORAGE_CALL_SEC = 60.0
"""One Cloud Storage request's own bound (the library's default), cut to the run's budget."""

STORAGE_BUCKET_METADATA_SWITCH = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"
"""google-cloud-storage 3.17 fetches every bucket it touches (``buckets.get``, in a
background thread) to label its OpenTelemetry spans, unless this variable is true
(``google/cloud/storage/_opentelemetry_tracing.py``). The bundle exports no Storage
traces, and its service account holds object roles on the backup buckets only (no
``storage.buckets.get``): the fetch would only be refused, so it is switched off for
every Storage client of the process (read on each call)."""
os.environ.setdefault(STORAGE_BUCKET_METADATA_SWITCH, "true")


class LocalDirectory:
    """A :class:`functions.backup.ports.BackupDestination` in a directory (the local
    stack's default: ``.local/backups/<region>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def delete_tree(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)


class GcsPrefix:
    """A ``gs://bucket/prefix`` through ``google-cloud-storage`` (cold storage class
    and CMEK are the bucket's defaults, set up once: see the README)."""

    def __init__(self, client: Any, uri: str) -> None:
        if not uri.startswith("gs://"):
            raise ValueError(f"not a gs:// URI: {uri}")
        bucket, _, prefix = uri[len("gs://") :].partition("/")
        self._bucket = client.bucket(bucket)
        self._client = client
        self._bucket_name = bucket
        self._prefix = prefix.strip("/")

    def _name(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def uri(self, key: str) -> str:
        return f"gs://{self._bucket_name}/{self._name(key)}"

    def write(self, key: str, data: bytes) -> None:
        blob = self._bucket.blob(self._name(key))
        with budget.named(budget.STORAGE):
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                checksum="md5",
                **budget.storage_call(STORAGE_CALL_SEC),
            )

    def read(self, key: str) -> bytes | None:
        try:
            with budget.named(budget.STORAGE):
                data: bytes = self._bucket.blob(self._name(key)).download_as_bytes(
                    checksum="md5",
                    **budget.storage_call(STORAGE_CALL_SEC),
                )
        except gexc.NotFound:
            return None
        return data

    def delete_tree(self, prefix: str) -> None:
        for blob in self._client.list_blobs(
            self._bucket_name,
            prefix=self._name(prefix) + "/",
            **budget.storage_call(STORAGE_CALL_SEC),
        ):
            blob.delete(**budget.storage_call(STORAGE_CALL_SEC))


def destination_for(target: str | Path, storage_client: Any = None) -> BackupDestination:
    """A ``gs://`` URI becomes a :class:`GcsPrefix`, anything else a directory."""
    text = str(target)
    if text.startswith("gs://"):
        if storage_client is None:
            from google.cloud import storage  # type: ignore[attr-defined]

            storage_client = storage.Client()
        return GcsPrefix(storage_client, text)
    return LocalDirectory(Path(text))
