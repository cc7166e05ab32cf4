"""The logical backup format: encrypted parts and an authenticated manifest.

A backup is, in each region's destination (directory or ``gs://`` prefix), a folder
``<backupId>/`` holding

- ``parts/<top-level collection>-<n>.pb.gz.enc`` (schema version 3, with its
  subcollections): gzip-compressed protobuf, the documents exactly as Firestore's gRPC
  API returned them (``google.firestore.v1.Document``: full name, typed fields, create
  and update times), as length-prefixed records: the wire form of
  ``repeated google.firestore.v1.Document documents = 1`` (each record is the tag byte
  ``0x0a``, a varint length and the ``Document``'s bytes; any protobuf library reads it
  as a ``ListDocumentsResponse`` without a page token). Nothing is converted on the
  way, so every value round-trips exactly (full timestamp precision, int64, NaN and
  infinities, bytes, geopoints, references, nested maps and arrays);
- or, in schema versions 1 and 2 (still read, and still written by the REST readers
  kept as the benchmark's baselines), ``parts/<top>-<n>.ndjson.gz.enc``: gzip NDJSON,
  one document per line as ``{"name": "<path relative to the database>", "fields":
  {...}}`` where ``fields`` is Firestore's own typed JSON;

each part sealed with AES-256-GCM (random 96-bit nonce first), with the schema version,
the backup id, the region of the copy, the part's index in the manifest and its name as
associated data (:class:`PartContext`): a part cannot be swapped for another, moved to
another region's copy or into another backup's folder, or read as another format;
- ``meta/firestore.rules.enc``, ``meta/firestore.indexes.json.enc``: the deployed
  bundle's rules and index definitions, sealed the same way;
- ``manifest.json``, written last (atomically): the backup id and region it belongs
  to, counts, the SHA-256 of every sealed file, the snapshot time, the schema version,
  the key fingerprint, and an HMAC over all of it. Reading checks that the manifest is
  the one of the backup and region asked for, so a folder copied or renamed under
  another backup id (or region) is refused. No manifest means the backup is not
  complete.

Schema version 1 (before 2026-11-30) bound only the part name; such backups are still
read: their manifest's backup id (under its HMAC) is checked the same way, but a part of
a version-1 backup is not bound to its region or index (the three copies were
byte-identical). Version 2 (2026-11-30): NDJSON parts bound by :class:`PartContext`.
Version 3: protobuf parts, the same binding.

Keys: the configured 32-byte secret is never used directly: HKDF derives the
encryption key, the manifest MAC key and the public fingerprint from it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.cloud.firestore_v1.types import firestore as firestore_types

from shared.errors import ErrorCode, Pack391Error

SCHEMA_VERSION = 3
"""Version of the manifest and part format written by the gRPC reader; a restore
refuses versions it does not know (:data:`READABLE_SCHEMA_VERSIONS`)."""

JSON_SCHEMA_VERSION = 2
"""The newest NDJSON format (written by the REST readers, the benchmark's baselines)."""

READABLE_SCHEMA_VERSIONS = (1, 2, 3)
"""1: NDJSON parts bound to their name only, no region in the manifest. 2: NDJSON,
:class:`PartContext`. 3: protobuf ``Document`` records, :class:`PartContext`."""

KEY_BYTES = 32
NONCE_BYTES = 12
GZIP_LEVEL = 5


class BackupIntegrityError(Pack391Error):
    """A backup cannot be trusted: a part or the manifest is missing, altered or unreadable."""

    code = ErrorCode.DATA_LOSS

    def __init__(self, message: str, part: str | None = None) -> None:
        super().__init__(message, part=part)
        self.part = part


class WrongKey(Pack391Error):
    """The backup was sealed with another key than the configured one."""

    code = ErrorCode.FAILED_PRECONDITION


class InvalidKey(Pack391Error):
    """The configured key is not 32 bytes of base64."""

    code = ErrorCode.FAILED_PRECONDITION


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(secret)


@dataclass(frozen=True)
class BackupKey:
    """Keys derived from the configured secret."""

    encryption: bytes
    mac: bytes
    key_id: str

    @classmethod
    def from_secret(cls, secret: bytes) -> BackupKey:
        if len(secret) != KEY_BYTES:
            raise InvalidKey(f"the backup key must be {KEY_BYTES} bytes, got {len(secret)}")
        fingerprint = _derive(secret, b"pack391-backup/key-id")
        return cls(
            encryption=_derive(secret, b"pack391-backup/parts"),
            mac=_derive(secret, b"pack391-backup/manifest"),
            key_id=fingerprint[:8].hex(),
        )

    @classmethod
    def from_base64(cls, text: str) -> BackupKey:
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidKey("the backup key is not valid base64") from exc
        return cls.from_secret(secret)


@dataclass(frozen=True)
class PartContext:
    """Where a sealed file belongs, bound into it as AES-GCM associated data."""

    backup_id: str
    region: str | None
    """The regional copy (None only for schema version 1, which did not bind it)."""
    index: int
    """Position in the manifest's ``parts`` (or ``meta``) list."""
    name: str
    schema_version: int = SCHEMA_VERSION

    def associated_data(self) -> bytes:
        if self.schema_version == 1:
            return self.name.encode()
        bound = {
            "v": self.schema_version,
            "backupId": self.backup_id,
            "region": self.region,
            "index": self.index,
            "name": self.name,
        }
        return json.dumps(bound, sort_keys=True, separators=(",", ":")).encode()


def seal(key: BackupKey, where: PartContext, plaintext: bytes) -> bytes:
    """AES-256-GCM with a random nonce; ``where`` is bound as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key.encryption).encrypt(nonce, plaintext, where.associated_data())


def unseal(key: BackupKey, where: PartContext, sealed: bytes) -> bytes:
    name = where.name
    if len(sealed) < NONCE_BYTES + 16:
        raise BackupIntegrityError(f"part {name} is truncated", part=name)
    try:
        return AESGCM(key.encryption).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], where.associated_data()
        )
    except InvalidTag:
        raise BackupIntegrityError(
            f"part {name} failed authentication: altered, sealed with another key, or not "
            f"part {where.index} of backup {where.backup_id}"
            + (f" in {where.region}" if where.region else ""),
            part=name,
        ) from None


def encode_part(lines: list[bytes]) -> bytes:
    """NDJSON lines (each ending in a newline) -> gzip."""
    return gzip.compress(b"".join(lines), compresslevel=GZIP_LEVEL, mtime=0)


def decode_part(name: str, compressed: bytes) -> list[dict[str, Any]]:
    try:
        text = gzip.decompress(compressed)
        return [json.loads(line) for line in text.splitlines() if line]
    except (OSError, EOFError, ValueError) as exc:
        raise BackupIntegrityError(f"part {name} does not decode: {exc}", part=name) from exc


def part_suffix(schema_version: int) -> str:
    """The file name ending of a part of that format."""
    return ".pb.gz.enc" if schema_version >= 3 else ".ndjson.gz.enc"


_DocumentList = firestore_types.ListDocumentsResponse.pb()
"""``repeated Document documents = 1`` (and a page token, never set here)."""


def encode_documents(docs: Sequence[Any]) -> bytes:
    """``google.firestore.v1.Document`` protobufs -> length-prefixed records -> gzip:
    one serialisation and one compression, both in C, for the whole part."""
    return gzip.compress(
        _DocumentList(documents=docs).SerializeToString(), compresslevel=GZIP_LEVEL, mtime=0
    )


def decode_documents(name: str, compressed: bytes) -> Sequence[Any]:
    """The ``Document`` protobufs of a version-3 part, in order."""
    try:
        found = _DocumentList.FromString(gzip.decompress(compressed))
    except (OSError, EOFError, ValueError) as exc:  # protobuf's DecodeError is a ValueError
        raise BackupIntegrityError(f"part {name} does not decode: {exc}", part=name) from exc
    if found.next_page_token:
        raise BackupIntegrityError(f"part {name} is not a list of documents", part=name)
    return found.documents  # type: ignore[no-any-return]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PartEntry:
    name: str
    sha256: str
    documents: int
    size_bytes: int


@dataclass(frozen=True)
class Manifest:
    """What a complete backup holds; the MAC makes it tamper-evident."""

    backup_id: str
    snapshot_time: str
    source_database: str
    """``projects/P/databases/D``: references are rebased from it on restore."""
    key_id: str
    collection_counts: dict[str, int]
    """Top-level collection -> documents in it and all its subcollections."""
    group_counts: dict[str, int]
    """Collection id -> documents in every collection with that id (one part series each)."""
    parts: list[PartEntry]
    meta: list[PartEntry]
    region: str | None = None
    """The regional copy this manifest describes (None: schema version 1)."""
    schema_version: int = SCHEMA_VERSION

    @property
    def document_count(self) -> int:
        return sum(self.collection_counts.values())

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in [*self.parts, *self.meta])

    def part_context(self, entry: PartEntry) -> PartContext:
        """What ``entry`` (one of :attr:`parts` or :attr:`meta`) was sealed with."""
        series = self.parts if entry in self.parts else self.meta
        return PartContext(
            self.backup_id, self.region, series.index(entry), entry.name, self.schema_version
        )

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "backupId": self.backup_id,
            "snapshotTime": self.snapshot_time,
            "sourceDatabase": self.source_database,
            "keyId": self.key_id,
            "collectionCounts": self.collection_counts,
            "groupCounts": self.group_counts,
            "parts": [_part_json(p) for p in self.parts],
            "meta": [_part_json(p) for p in self.meta],
        }
        if self.schema_version >= 2:
            body["region"] = self.region
        return body

    def to_bytes(self, key: BackupKey) -> bytes:
        body = self._body()
        body["mac"] = _mac(key, body)
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: BackupKey, *, backup_id: str, region: str) -> Manifest:
        """The authenticated manifest of backup ``backup_id``'s copy in ``region``.

        Refused (naming ``manifest.json``) when altered, or when it is another backup's
        or another region's manifest: a folder copied or renamed under a new id."""
        try:
            body = json.loads(data)
            mac = body.pop("mac")
            version = body["schemaVersion"]
            found_key = body["keyId"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupIntegrityError("manifest.json is malformed", part="manifest.json") from exc
        if version not in READABLE_SCHEMA_VERSIONS:
            raise BackupIntegrityError(
                f"manifest schema version {version} is not supported "
                f"(readable: {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})",
                part="manifest.json",
            )
        if found_key != key.key_id:
            raise WrongKey(
                f"backup {body.get('backupId')} was sealed with key {found_key}; "
                f"the configured key is {key.key_id}",
                expectedKeyId=found_key,
                configuredKeyId=key.key_id,
            )
        if not hmac.compare_digest(str(mac), _mac(key, body)):
            raise BackupIntegrityError(
                "manifest.json failed authentication (altered)", part="manifest.json"
            )
        found_id = body["backupId"]
        if found_id != backup_id:
            raise BackupIntegrityError(
                f"manifest.json belongs to backup {found_id}, not {backup_id}: the folder "
                "was copied or renamed",
                part="manifest.json",
            )
        found_region = body.get("region") if version >= 2 else None
        if version >= 2 and found_region != region:
            raise BackupIntegrityError(
                f"manifest.json is the {found_region} copy of {backup_id}, not the {region} "
                "copy: the folder was copied from another region",
                part="manifest.json",
            )
        return cls(
            backup_id=body["backupId"],
            snapshot_time=body["snapshotTime"],
            source_database=body["sourceDatabase"],
            key_id=found_key,
            collection_counts={k: int(v) for k, v in body["collectionCounts"].items()},
            group_counts={k: int(v) for k, v in body["groupCounts"].items()},
            parts=[_part_entry(p) for p in body["parts"]],
            meta=[_part_entry(p) for p in body["meta"]],
            region=found_region,
            schema_version=version,
        )


def _part_json(p: PartEntry) -> dict[str, Any]:
    return {"name": p.name, "sha256": p.sha256, "documents": p.documents, "sizeBytes": p.size_bytes}


def _part_entry(raw: dict[str, Any]) -> PartEntry:
    return PartEntry(raw["name"], raw["sha256"], int(raw["documents"]), int(raw["sizeBytes"]))


def _mac(key: BackupKey, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.mac, canonical, hashlib.sha256).hexdigest()


def check_part(entry: PartEntry, sealed: bytes | None) -> None:
    """The sealed bytes are the ones the manifest names."""
    if sealed is None:
        raise BackupIntegrityError(f"part {entry.name} is missing", part=entry.name)
    if sha256(sealed) != entry.sha256:
        raise BackupIntegrityError(
            f"part {entry.name} has the wrong SHA-256 (altered or corrupted)", part=entry.name
        )
