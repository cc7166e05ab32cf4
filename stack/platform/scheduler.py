"""The local Cloud Scheduler: fires each scheduled function on its own schedule.

Schedules are unix-cron strings (what Cloud Scheduler accepts), parsed by
APScheduler's ``CronTrigger``. Each run is an HTTP POST to the local functions
server with the headers Cloud Scheduler sends, so the function runs exactly as
deployed.

Logging: one INFO line per run (``scheduled NAME ok|failed (STATUS) in N.NN s``, from
``pack391.scheduler``); APScheduler's own loggers are kept at WARNING, so its several
INFO lines per job and minute stay out of the ``pack391 serve`` terminal.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:  # imported where used: `pack391 trigger` fires once, no scheduler
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("pack391.scheduler")

APSCHEDULER_LOG_LEVEL = logging.WARNING
"""APScheduler's loggers (``apscheduler.*``): its per-run INFO lines are noise here."""


def scheduler_headers(name: str, region: str, schedule_time: datetime) -> dict[str, str]:
    """The headers Cloud Scheduler sets on an HTTP target run."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": f"firebase-schedule-{name}-{region}",
        "X-CloudScheduler-ScheduleTime": schedule_time.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
    }


def fire(base_url: str, project: str, region: str, name: str, schedule_time: datetime) -> int:
    """Run one scheduled function now; returns the HTTP status (200 = success)."""
    response = requests.post(
        f"{base_url}/{project}/{region}/{name}",
        data=b"{}",
        headers=scheduler_headers(name, region, schedule_time),
        timeout=600,
    )
    if response.status_code != 200:
        log.error("%s failed: %d %s", name, response.status_code, response.text[:500])
    return response.status_code


def trigger_for(schedule: str, timezone: str | None) -> CronTrigger:
    """The APScheduler trigger for a unix-cron schedule (raises ValueError when invalid)."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(schedule, timezone=timezone or "UTC")


def start_scheduler(
    base_url: str, project: str, region: str, functions: dict[str, dict[str, Any]]
) -> BackgroundScheduler:
    """Start firing every ``trigger == "schedule"`` function of ``functions``."""
    logging.getLogger("apscheduler").setLevel(APSCHEDULER_LOG_LEVEL)
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    for name, info in sorted(functions.items()):
        if info.get("trigger") != "schedule":
            continue

        def run(fn_name: str = name) -> None:
            started = datetime.now(UTC).replace(microsecond=0)
            began = time.monotonic()
            try:
                status = fire(base_url, project, region, fn_name, started)
            except requests.RequestException as exc:
                log.error("scheduled %s could not be sent: %s", fn_name, exc)
                return
            outcome = "ok" if status == 200 else f"failed ({status})"
            log.info("scheduled %s %s in %.2f s", fn_name, outcome, time.monotonic() - began)

        scheduler.add_job(
            run,
            trigger_for(info["schedule"], info.get("timeZone")),
            id=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=30,
        )
    scheduler.start()
    return scheduler
