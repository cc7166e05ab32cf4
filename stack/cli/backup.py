"""``pack391 backup | verify | restore | drill``: logical backups of the local stack's
Firestore, taken, checked, restored and drilled by the backup service exactly as the
functions wire it. They need FIRESTORE_EMULATOR_HOST and read the PACK391_BACKUP_*
settings."""

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

    drill = sub.add_parser(
        "drill",
        help="restore drill: a backup restored into the drill database, counted, timed (RTO), "
        "judged by the pre-deploy data gates, cleaned up; exit 1 unless it passed",
    )
    drill.add_argument("backup_id", nargs="?", help="default: the latest complete backup")
    drill.add_argument("--region", choices=BACKUP_REGIONS, help="read this region's copy")
    drill.add_argument("--reason", default="pack391 drill", help="recorded in the audit log")
    drill.add_argument("--json", action="store_true", help="print the drill record as JSON")
    drill.set_defaults(func=cmd_drill)


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


def drill_report(drill: Any) -> str:
    """A drill record for a terminal: the verdict, the restore against the RTO, and each
    data gate's value, threshold and window on the restored copy."""
    lines = [
        f"{drill.drill_id}: {drill.verdict.value if drill.verdict else 'no verdict'} "
        f"(source {drill.source or '-'}, target {drill.target})",
        f"restore: {drill.documents} documents in {drill.duration_sec:.2f} s "
        f"(RTO {drill.rto_target_sec} s: {'within' if drill.within_rto else 'NOT within'}), "
        f"cleaned up: {'yes' if drill.cleaned_up else 'NO'}",
    ]
    if not drill.gates:
        lines.append("data gates: not run")
        return "\n".join(lines)
    moment = drill.data_moment.isoformat() if drill.data_moment else "-"
    lines.append(f"data gates on {drill.gates[0].database}, data as of {moment}:")
    for g in drill.gates:
        value = "-" if g.value is None else f"{g.value:g}{g.unit if g.unit == '%' else ''}"
        limit = "-" if g.threshold is None else f"{g.threshold:g}{g.unit if g.unit == '%' else ''}"
        window = (
            f"[{g.window_start:%H:%M:%S}, {g.window_end:%H:%M:%S})"
            if g.window_start and g.window_end
            else ""
        )
        lines.append(
            f"  {g.name:<18} {g.status.value.upper():<8} {value:>8} / {limit:<6} {window} "
            f"{g.detail}".rstrip()
        )
    return "\n".join(lines)


def cmd_drill(args: argparse.Namespace) -> int:
    import getpass
    import secrets

    from shared.audit import Change
    from shared.clock import utc_now
    from shared.errors import Pack391Error
    from shared.models.backup import RestoreDrillRequest

    service, _ = _backup_parts()
    now = utc_now()
    change = Change(
        f"cli:{getpass.getuser()}",
        "backup.restore_drill",
        args.reason,
        f"cli-{secrets.token_hex(6)}",
        now,
    )
    request = RestoreDrillRequest.model_validate(
        {"backupId": args.backup_id, "region": args.region, "reason": args.reason}
    )
    try:
        drill = service.drill(request, change)
    except Pack391Error as exc:
        print(f"pack391 drill: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(drill)
    else:
        print(drill_report(drill))
    return 0 if drill.ok else 1
