"""The logical backend's read side: one backup's copies in their regions' destinations,
read back and checked (the manifest, each part's SHA-256 and authenticated decryption,
the documents' counts). What verification, the restore and the write path's "exists
already" check read through."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from functions.backup import archive
from functions.backup.archive import BackupIntegrityError, BackupKey, Manifest, PartEntry
from functions.backup.ports import BackupDestination

MANIFEST = "manifest.json"
"""A backup's manifest, beside its parts (``<backupId>/manifest.json``)."""


class LogicalReader:
    """The copies of logical backups, one destination per region, read back."""

    def __init__(self, key: BackupKey, destinations: Mapping[str, BackupDestination]) -> None:
        self.key = key
        self.destinations = dict(destinations)
        self.regions: Sequence[str] = tuple(self.destinations)

    def location(self, region: str, backup_id: str) -> str:
        return self.destinations[region].uri(backup_id)

    def read(self, region: str, backup_id: str, name: str) -> bytes | None:
        return self.destinations[region].read(f"{backup_id}/{name}")

    def manifest(self, backup_id: str, region: str) -> Manifest:
        data = self.read(region, backup_id, MANIFEST)
        if data is None:
            raise BackupIntegrityError(
                f"backup {backup_id} in {region} has no manifest (incomplete)", part=MANIFEST
            )
        return Manifest.from_bytes(data, self.key, backup_id=backup_id, region=region)

    def read_part(self, region: str, manifest: Manifest, entry: PartEntry) -> bytes:
        sealed = self.read(region, manifest.backup_id, entry.name)
        archive.check_part(entry, sealed)
        assert sealed is not None
        return archive.unseal(self.key, manifest.part_context(entry), sealed)

    def documents(self, backup_id: str, region: str, manifest: Manifest) -> Iterator[Sequence[Any]]:
        """Each part's documents, checked against the manifest's count: ``{"name",
        "fields"}`` dicts (schema versions 1 and 2) or ``Document`` protobufs (3)."""
        for entry in manifest.parts:
            plain = self.read_part(region, manifest, entry)
            docs: Sequence[Any]
            if manifest.schema_version >= 3:
                docs = archive.decode_documents(entry.name, plain)
            else:
                docs = archive.decode_part(entry.name, plain)
            if len(docs) != entry.documents:
                raise BackupIntegrityError(
                    f"part {entry.name} holds {len(docs)} documents, manifest says "
                    f"{entry.documents}",
                    part=entry.name,
                )
            yield docs

    def verify(self, backup_id: str, region: str) -> None:
        """Raise :class:`BackupIntegrityError` unless ``region``'s copy is complete and
        every part and saved file decrypts."""
        manifest = self.manifest(backup_id, region)
        total = sum(len(docs) for docs in self.documents(backup_id, region, manifest))
        for entry in manifest.meta:
            self.read_part(region, manifest, entry)
        if total != manifest.document_count:
            raise BackupIntegrityError(
                f"backup {backup_id} holds {total} documents, manifest says "
                f"{manifest.document_count}"
            )

    def bundle_file(self, backup_id: str, region: str, name: str) -> bytes:
        """A saved rules or index file, decrypted."""
        manifest = self.manifest(backup_id, region)
        for entry in manifest.meta:
            if entry.name == f"meta/{name}.enc":
                return self.read_part(region, manifest, entry)
        raise BackupIntegrityError(f"backup {backup_id} has no {name}", part=name)
