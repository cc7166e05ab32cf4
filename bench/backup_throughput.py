"""Backup and restore throughput of the logical backend, against the emulator's own export.

    ./venv/bin/python -m bench.backup_throughput            # 100,000 documents
    ./venv/bin/python -m bench.backup_throughput --docs 20000

Starts a private Firestore emulator, seeds ``--docs`` documents across several
collections with subcollections (every value type among the fields), then in the
same run:

1. the anchor: the emulator's own export (``POST /emulator/v1/projects/P:export``),
   timed, with its size on disk;
2. a logical backup (three encrypted regional copies) with each reader: the first
   (one ordered REST pass over the kindless all-descendants query), the parallel REST
   reader (the top-level collection trees read by ``--readers`` threads at one
   ``readTime``, NDJSON parts), and the gRPC reader (the same trees over gRPC, parts of
   ``Document`` protobufs: the default), then the export again; ``--rounds`` repeats
   this, interleaved, because the shared machine's load moves every figure between
   runs. Each is timed, with the CPU seconds it cost the emulator and this process;
3. a restore of the gRPC reader's backup into an empty database, counts checked;
4. a full read-back verification of one copy.

Prints the figures as a Markdown table (for docs/benchmarks.md) and writes them as
JSON to ``.local/bench/backup_throughput.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from functions.backup.archive import BackupKey  # noqa: E402
from functions.backup.documents import FirestoreDocuments  # noqa: E402
from functions.backup.logical import LogicalBackupStore  # noqa: E402
from functions.backup.logical_write import BACKUP_READ_THREADS_COUNT  # noqa: E402
from shared.models.backup import BackupBackend, BackupRecord, BackupStatus  # noqa: E402
from shared.thresholds import BACKUP_REGIONS, RTO_SEC  # noqa: E402
from stack.platform import datastores  # noqa: E402

PROJECT = "demo-pack391-bench"

# collection -> (parent docs, subcollection, children per parent): shares of the total
SHAPE = (
    ("users", 0.20, "sessions", 1),
    ("chats", 0.05, "messages", 7),
    ("payouts", 0.10, None, 0),
    ("ledger", 0.05, "entries", 1),
)


def _fields(i: int, db_path: str) -> dict[str, Any]:
    return {
        "n": {"integerValue": str(i)},
        "amount": {"doubleValue": i * 0.37},
        "name": {"stringValue": f"document number {i} zażółć"},
        "active": {"booleanValue": i % 2 == 0},
        "at": {"timestampValue": f"2026-11-27T12:{i % 60:02d}:{i % 60:02d}.{i % 999999:06d}Z"},
        "where": {"geoPointValue": {"latitude": (i % 180) - 90, "longitude": (i % 360) - 180}},
        "owner": {"referenceValue": f"{db_path}/documents/users/u{i % 1000}"},
        "blob": {"bytesValue": base64.b64encode(i.to_bytes(4, "big")).decode()},
        "tags": {"arrayValue": {"values": [{"stringValue": "a"}, {"integerValue": str(i % 7)}]}},
        "meta": {"mapValue": {"fields": {"v": {"integerValue": "2"}, "none": {"nullValue": None}}}},
    }


def seed(docs: FirestoreDocuments, total: int) -> dict[str, int]:
    """Write ``total`` documents (REST commits of 500); returns per top-level counts."""
    writes: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    base = docs.documents_path
    written = 0

    def add(path: str, i: int) -> None:
        nonlocal written, writes
        writes.append(
            {"update": {"name": f"{base}/{path}", "fields": _fields(i, docs.database_path)}}
        )
        written += 1
        if len(writes) == 500:
            docs.commit(writes)
            writes = []

    for collection, share, sub, children in SHAPE:
        parents = int(total * share)
        for p in range(parents):
            add(f"{collection}/{collection[0]}{p:07d}", written)
            for c in range(children):
                add(f"{collection}/{collection[0]}{p:07d}/{sub}/{c}", written)
        counts[collection] = parents * (1 + children)
    rest = total - written  # what the shares' rounding left over
    for i in range(rest):
        add(f"events/e{i:07d}", written)
    if rest:
        counts["events"] = rest
    if writes:
        docs.commit(writes)
    return counts


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_sec(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(total: int, workers: int, readers: int, rounds: int) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="pack391-bench-"))
    child, host = datastores.start_firestore_emulator(PROJECT, log_dir)
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        source = FirestoreDocuments.for_environment(PROJECT)
        started = time.perf_counter()
        counts = seed(source, total)
        seed_sec = time.perf_counter() - started
        print(f"seeded {sum(counts.values())} documents in {seed_sec:.1f}s: {counts}", flush=True)

        emulator_pid = child.process.pid
        cpu: dict[str, list[tuple[float, float]]] = {}

        def measured(label: str, t0: float, emu0: float, py0: float) -> float:
            wall = time.perf_counter() - t0
            cpu.setdefault(label, []).append(
                (round(cpu_sec(emulator_pid) - emu0, 2), round(time.process_time() - py0, 2))
            )
            return wall

        def emulator_export() -> tuple[float, int]:
            out = Path(tempfile.mkdtemp(prefix="export-", dir=log_dir))
            emu0, py0 = cpu_sec(emulator_pid), time.process_time()
            t0 = time.perf_counter()
            response = requests.post(
                f"http://{host}/emulator/v1/projects/{PROJECT}:export",
                json={
                    "database": f"projects/{PROJECT}/databases/(default)",
                    "export_directory": str(out),
                },
                timeout=3600,
            )
            response.raise_for_status()
            return measured("export", t0, emu0, py0), du(out)

        key = BackupKey.from_secret(os.urandom(32))
        dirs = {r: log_dir / "backups" / r for r in BACKUP_REGIONS}
        stores = {
            reader: LogicalBackupStore(
                source, key, dirs, workers=workers, readers=readers, reader=reader
            )
            for reader in ("one-pass", "rest", "grpc")
        }
        store = stores["grpc"]

        def backup(reader: str, backup_id: str) -> tuple[float, int]:
            emu0, py0 = cpu_sec(emulator_pid), time.process_time()
            t0 = time.perf_counter()
            created = stores[reader].create(backup_id, datetime.now(UTC))
            assert created.document_count == total, created.collection_counts
            return measured(reader, t0, emu0, py0), created.size_bytes

        export_sec, export_bytes = emulator_export()
        print(f"emulator export: {export_sec:.2f}s, {export_bytes} bytes", flush=True)
        exports = [export_sec]
        runs: dict[str, list[float]] = {"one-pass": [], "rest": [], "grpc": []}
        ratios: dict[str, list[float]] = {"one-pass": [], "rest": [], "grpc": []}
        sizes: dict[str, int] = {}
        backup_id = ""
        for n in range(rounds):
            round_runs: dict[str, float] = {}
            for reader in runs:
                backup_id = f"20261130T000000Z-{reader[:4]}{n:03d}"
                sec, sizes[reader] = backup(reader, backup_id)
                round_runs[reader] = sec
                print(
                    f"round {n}: {reader} backup {sec:.2f}s, {sizes[reader]} bytes/copy, "
                    f"CPU (emulator, python) {cpu[reader][-1]}",
                    flush=True,
                )
            export_sec, _ = emulator_export()
            print(f"round {n}: emulator export {export_sec:.2f}s {cpu['export'][-1]}", flush=True)
            # the ratio of a round: against the mean of the exports just before and after
            anchor = (exports[-1] + export_sec) / 2
            exports.append(export_sec)
            for reader, sec in round_runs.items():
                runs[reader].append(sec)
                ratios[reader].append(round(sec / anchor, 2))
        anchor_sec = statistics.median(exports)
        backup_sec = statistics.median(runs["grpc"])
        rest_sec = statistics.median(runs["rest"])
        old_sec = statistics.median(runs["one-pass"])

        target = source.with_database("bench-restore")
        emu0, py0 = cpu_sec(emulator_pid), time.process_time()
        restored = store.restore(backup_id, "europe-west1", target)
        measured("restore", time.perf_counter(), emu0, py0)
        print(f"restore: {restored.duration_sec:.2f}s {cpu['restore'][-1]}", flush=True)

        record = BackupRecord(
            backup_id=backup_id,
            backend=BackupBackend.LOGICAL,
            status=BackupStatus.COMPLETE,
            snapshot_time=datetime.now(UTC),
            started_at=datetime.now(UTC),
            document_count=total,
        )
        t0 = time.perf_counter()
        store.verify(record, "asia-northeast1")
        verify_sec = time.perf_counter() - t0

        restore_rate = restored.documents / restored.duration_sec
        return {
            "date": datetime.now(UTC).date().isoformat(),
            "documents": total,
            "collections": counts,
            "workers": workers,
            "readers": readers,
            "rounds": rounds,
            "emulator_export_sec": [round(s, 3) for s in exports],
            "emulator_export_median_sec": round(anchor_sec, 3),
            "emulator_export_docs_per_sec": round(total / anchor_sec),
            "emulator_export_bytes": export_bytes,
            "one_pass_backup_sec": [round(s, 3) for s in runs["one-pass"]],
            "one_pass_vs_export_ratio": round(old_sec / anchor_sec, 2),
            "rest_backup_sec": [round(s, 3) for s in runs["rest"]],
            "rest_vs_export_ratio": round(rest_sec / anchor_sec, 2),
            "grpc_backup_sec": [round(s, 3) for s in runs["grpc"]],
            "round_ratios_vs_export": ratios,
            "cpu_sec_emulator_python": cpu,
            "backup_sec": round(backup_sec, 3),
            "backup_docs_per_sec": round(total / backup_sec),
            "backup_bytes_per_copy": sizes["grpc"],
            "rest_backup_bytes_per_copy": sizes["rest"],
            "backup_vs_export_ratio": round(backup_sec / anchor_sec, 2),
            "grpc_vs_rest_speedup": round(rest_sec / backup_sec, 2),
            "restore_sec": round(restored.duration_sec, 3),
            "restore_docs_per_sec": round(restore_rate),
            "verify_one_copy_sec": round(verify_sec, 3),
            "rto_1m_docs_sec": round(1_000_000 / restore_rate),
            "rto_10m_docs_sec": round(10_000_000 / restore_rate),
            "rto_target_sec": RTO_SEC,
            "backup_target_met": backup_sec <= 4 * anchor_sec,
            "restore_target_met": 1_000_000 / restore_rate <= RTO_SEC,
        }
    finally:
        child.stop()


def table(r: dict[str, Any]) -> str:
    rows = [
        ("documents", f"{r['documents']:,}"),
        ("emulator export (anchor), s", " / ".join(str(s) for s in r["emulator_export_sec"])),
        ("emulator export median, s", r["emulator_export_median_sec"]),
        ("emulator export, docs/s", f"{r['emulator_export_docs_per_sec']:,}"),
        ("emulator export size, bytes", f"{r['emulator_export_bytes']:,}"),
        ("one-pass REST reader backup, s", " / ".join(str(s) for s in r["one_pass_backup_sec"])),
        ("one-pass backup / export (median)", r["one_pass_vs_export_ratio"]),
        (
            f"parallel REST reader backup ({r['readers']} readers), s",
            " / ".join(str(s) for s in r["rest_backup_sec"]),
        ),
        ("parallel REST backup / export (median)", r["rest_vs_export_ratio"]),
        (
            f"gRPC reader backup ({r['readers']} readers, 3 copies), s",
            " / ".join(str(s) for s in r["grpc_backup_sec"]),
        ),
        ("gRPC reader backup, docs/s (median)", f"{r['backup_docs_per_sec']:,}"),
        ("**gRPC backup / export (median; target <= 4)**", r["backup_vs_export_ratio"]),
        (
            "gRPC backup / export per round",
            " / ".join(str(x) for x in r["round_ratios_vs_export"]["grpc"]),
        ),
        ("gRPC / parallel REST speed-up (median)", r["grpc_vs_rest_speedup"]),
        (
            "backup size per copy (protobuf / NDJSON), bytes",
            f"{r['backup_bytes_per_copy']:,} / {r['rest_backup_bytes_per_copy']:,}",
        ),
        *[
            (f"CPU s (emulator, python): {label}", " / ".join(map(str, runs)))
            for label, runs in r["cpu_sec_emulator_python"].items()
        ],
        ("restore incl. count check, s", r["restore_sec"]),
        ("restore, docs/s", f"{r['restore_docs_per_sec']:,}"),
        ("verify one copy (hash, decrypt, parse), s", r["verify_one_copy_sec"]),
        ("implied RTO, 1M documents, s (target <= 900)", f"{r['rto_1m_docs_sec']:,}"),
        ("implied RTO, 10M documents, s", f"{r['rto_10m_docs_sec']:,}"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="seal/write and restore threads")
    parser.add_argument("--readers", type=int, default=BACKUP_READ_THREADS_COUNT)
    parser.add_argument("--rounds", type=int, default=2, help="backup and export rounds")
    args = parser.parse_args()
    result = run(args.docs, args.workers, args.readers, args.rounds)
    out = ROOT / ".local" / "bench" / "backup_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(
        f"backup within 4x of the emulator export: {result['backup_target_met']}; "
        f"1M-document restore within the {RTO_SEC}s RTO: {result['restore_target_met']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
