"""The logical backup format: encrypted parts and an authenticated manifest.

A backup is, in each region's destination (directory or ``gs://`` prefix), a folder
``<backupId>/`` holding

- ``parts/<top-level collection>-<n>.ndjson.gz.enc`` (with its subcollections):
  gzip-compressed NDJSON, one document per line as
  ``{"name": "<path relative to the database>", "fields": {...}}`` where ``fields``
  is Firestore's own typed JSON (``timestampValue``, ``geoPointValue``,
  ``referenceValue``, ``bytesValue``, ``mapValue``, ``arrayValue``, ``nullValue``...),
  so every value round-trips exactly (full timestamp precision, int64, NaN). Each part
  is sealed with AES-256-GCM (random 96-bit nonce first) and its name as associated
  data, so a part cannot be swapped for another;
- ``meta/firestore.rules.enc``, ``meta/firestore.indexes.json.enc``: the deployed
  bundle's rules and index definitions, sealed the same way;
- ``manifest.json``, written last (atomically): counts, the SHA-256 of every sealed
  file, the snapshot time, the schema version, the key fingerprint, and an HMAC over
  all of it. No manifest means the backup is not complete.

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
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from firebase_functions.https_fn import FunctionsErrorCode

from shared.errors import Pack391Error

SCHEMA_VERSION = 1
"""Version of the manifest and part format; a restore refuses versions it does not know."""

KEY_BYTES = 32
NONCE_BYTES = 12
GZIP_LEVEL = 5


class BackupIntegrityError(Pack391Error):
    """A backup cannot be trusted: a part or the manifest is missing, altered or unreadable."""

    code = FunctionsErrorCode.DATA_LOSS

    def __init__(self, message: str, part: str | None = None) -> None:
        super().__init__(message, part=part)
        self.part = part


class WrongKey(Pack391Error):
    """The backup was sealed with another key than the configured one."""

    code = FunctionsErrorCode.FAILED_PRECONDITION


class InvalidKey(Pack391Error):
    """The configured key is not 32 bytes of base64."""

    code = FunctionsErrorCode.FAILED_PRECONDITION


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


def seal(key: BackupKey, name: str, plaintext: bytes) -> bytes:
    """AES-256-GCM with a random nonce; ``name`` is bound as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key.encryption).encrypt(nonce, plaintext, name.encode())


def unseal(key: BackupKey, name: str, sealed: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise BackupIntegrityError(f"part {name} is truncated", part=name)
    try:
        return AESGCM(key.encryption).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], name.encode()
        )
    except InvalidTag:
        raise BackupIntegrityError(
            f"part {name} failed authentication (altered, or sealed with another key)", part=name
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
    schema_version: int = SCHEMA_VERSION

    @property
    def document_count(self) -> int:
        return sum(self.collection_counts.values())

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in [*self.parts, *self.meta])

    def _body(self) -> dict[str, Any]:
        return {
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

    def to_bytes(self, key: BackupKey) -> bytes:
        body = self._body()
        body["mac"] = _mac(key, body)
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: BackupKey) -> Manifest:
        try:
            body = json.loads(data)
            mac = body.pop("mac")
            version = body["schemaVersion"]
            found_key = body["keyId"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupIntegrityError("manifest.json is malformed", part="manifest.json") from exc
        if version != SCHEMA_VERSION:
            raise BackupIntegrityError(
                f"manifest schema version {version} is not supported (want {SCHEMA_VERSION})",
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
        return cls(
            backup_id=body["backupId"],
            snapshot_time=body["snapshotTime"],
            source_database=body["sourceDatabase"],
            key_id=found_key,
            collection_counts={k: int(v) for k, v in body["collectionCounts"].items()},
            group_counts={k: int(v) for k, v in body["groupCounts"].items()},
            parts=[_part_entry(p) for p in body["parts"]],
            meta=[_part_entry(p) for p in body["meta"]],
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
