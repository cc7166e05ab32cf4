"""``pack391 backup | verify | restore``: logical backups of the local stack's
Firestore, taken, checked and restored by the backup service exactly as the functions
wire it. They need FIRESTORE_EMULATOR_HOST and read the PACK391_BACKUP_* settings."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from shared.config import project_id
from shared.thresholds import BACKUP_REGIONS
from stack.platform import procs


def add_parser(sub: Any) -> None:
    backup = sub.add_parser(
        "backup", help="take a logical backup of the local stack's Firestore into .local/backups"
    )
    backup.set_defaults(func=cmd_backup)

    verify = sub.add_parser(
        "verify", help="check a backup's copies: manifest, SHA-256 and tag of every part"
    )
    verify.add_argument("backup_id", nargs="?", help="default: the latest complete backup")
    verify.add_argument("--region", choices=BACKUP_REGIONS, help="only this region's copy")
    verify.set_defaults(func=cmd_verify)

    restore = sub.add_parser("restore", help="restore a logical backup into a database")
    restore.add_argument("backup_id", help="e.g. 20261127T210000Z-1a2b3c (pack391 verify lists)")
    restore.add_argument("--database", default="(default)", help="target database id")
    restore.add_argument("--region", choices=BACKUP_REGIONS, default=BACKUP_REGIONS[0])
    restore.add_argument(
        "--overwrite",
        action="store_true",
        help="write even though the target already holds documents",
    )
    restore.set_defaults(func=cmd_restore)


def _backup_parts() -> tuple[Any, Any]:
    """The backup service and store, wired exactly as the functions wire them."""
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        raise procs.StackError(
            "set FIRESTORE_EMULATOR_HOST to the local stack's emulator "
            "(`pack391 serve` prints it as 'Firestore emulator')"
        )
    os.environ.setdefault("FUNCTIONS_EMULATOR", "true")
    from functions.backup.wiring import backup_service, configured_store, reset_backup_service

    reset_backup_service()
    return backup_service(), configured_store(project_id())


def _print_json(value: Any) -> None:
    from shared.edge import to_wire

    print(json.dumps(to_wire(value), indent=2, sort_keys=True))


def cmd_backup(args: argparse.Namespace) -> int:
    from shared.clock import utc_now

    service, _ = _backup_parts()
    _print_json(service.backup(utc_now()))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from functions.backup.archive import BackupIntegrityError, WrongKey
    from functions.backup.policy import latest_complete
    from functions.backup.store import BackupCatalog
    from shared.firestore import get_db

    _, store = _backup_parts()
    catalog = BackupCatalog(get_db())
    regions = [args.region] if args.region else list(store.regions)
    record = (
        catalog.get(args.backup_id)
        if args.backup_id
        else latest_complete(catalog.all(), regions[0])
    )
    if record is None:
        print(f"pack391 verify: no backup {args.backup_id or '(none complete)'}", file=sys.stderr)
        return 1
    failed = 0
    for region in regions:
        try:
            store.verify(record, region)
            print(f"{record.backup_id} {region}: ok ({record.document_count} documents)")
        except (BackupIntegrityError, WrongKey) as exc:
            failed += 1
            print(f"{record.backup_id} {region}: FAILED: {exc.message}", file=sys.stderr)
    return 1 if failed else 0


def cmd_restore(args: argparse.Namespace) -> int:
    from functions.backup.archive import BackupIntegrityError, WrongKey
    from functions.backup.documents import FirestoreDocuments
    from functions.backup.logical import LogicalBackupStore

    _, store = _backup_parts()
    if not isinstance(store, LogicalBackupStore):
        print("pack391 restore: only logical backups restore here", file=sys.stderr)
        return 2
    from shared.errors import FailedPrecondition

    target = FirestoreDocuments.for_environment(project_id(), args.database)
    try:
        result = store.restore(args.backup_id, args.region, target, overwrite=args.overwrite)
    except (BackupIntegrityError, WrongKey, FailedPrecondition) as exc:
        print(f"pack391 restore: {exc.message}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "backupId": args.backup_id,
                "target": target.database_path,
                "documents": result.documents,
                "groupCounts": result.group_counts,
                "durationSec": round(result.duration_sec, 3),
            },
            indent=2,
            sort_keys=True,
        )
    )
    return 0
