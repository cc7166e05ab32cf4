"""The last act: a backup as Cloud Scheduler runs it, then a restore drill of it."""

from __future__ import annotations

import logging

from stack.rehearse.acts.track import Track
from stack.rehearse.timeline import epoch

log = logging.getLogger("pack391.rehearse")


class Backup(Track):
    """``backup`` and ``drill``."""

    def backup_and_drill(self) -> None:
        s = self.stack
        from shared import collections as c

        with self.act("backup"):
            status = s.trigger("pack391_backupFirestore")
            latest = [
                (snap.id, snap.to_dict() or {})
                for snap in self.recorder.db.collection(c.BACKUPS).stream()
            ]
            mine = [
                b
                for b in latest
                if (epoch((b[1]).get("startedAt") or b[1].get("snapshotTime")) or 0)
                >= self.rec.started_at - 120
            ]
            pick = max(
                mine or latest, key=lambda b: epoch(b[1].get("snapshotTime")) or 0, default=None
            )
        backup = {"backupId": pick[0] if pick else None,
                  "status": (pick[1].get("status") if pick else None),
                  "httpStatus": status,
                  "documentCount": pick[1].get("documentCount") if pick else None}  # fmt: skip
        self.rec.docs["backup"] = backup
        with self.act("drill", backupId=backup["backupId"]):
            a = s.call("pack391_restoreDrill", {"backupId": backup["backupId"],
                                                "reason": f"launch rehearsal {self.run_id}"},
                       )  # fmt: skip
        r = a.result
        self.rec.docs["drill"] = {
            "status": a.status, "message": a.message, "drillId": r.get("drillId"),
            "ok": r.get("ok"), "durationSec": r.get("durationSec"),
            "documents": r.get("documents"), "withinRto": r.get("withinRto"),
        }  # fmt: skip
