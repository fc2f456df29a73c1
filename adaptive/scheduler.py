"""Scheduled re-optimisation: APScheduler jobs kept in the same database, so they survive restarts.

Only the service runs the scheduler; the CLI edits the same job store with a paused scheduler. The
service also wakes its scheduler every few seconds, so jobs added by another process are seen promptly.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from adaptive.runs import NotFound, RunConflict, launch, queue_run
from operators.errors import SettingsError
from storage.engine import get_engine, redacted, storage_url
from storage.repository import Repository

JOBS_TABLE = "shaketune_schedules"
WAKEUP_SECONDS = 5
MIN_INTERVAL_SECONDS = 1
log = logging.getLogger("shaketune.scheduler")


@dataclass(frozen=True)
class Schedule:
    id: str
    target: str
    trigger: str
    next_run_time: datetime | None


def trigger_for(cron: str | None, every_seconds: float | None) -> Any:
    """A cron expression (five fields, UTC) or an interval in seconds: exactly one."""
    if (cron is None) == (every_seconds is None):
        raise SettingsError("give exactly one of a cron expression or an interval in seconds")
    if cron is not None:
        try:
            return CronTrigger.from_crontab(cron, timezone=timezone.utc)
        except ValueError as exc:
            raise SettingsError(f"malformed cron expression {cron!r}: {exc}") from None
    if not every_seconds >= MIN_INTERVAL_SECONDS:
        raise SettingsError(f"interval must be at least {MIN_INTERVAL_SECONDS} s, got {every_seconds}")
    return IntervalTrigger(seconds=every_seconds, timezone=timezone.utc)


_urls: dict[str, str] = {}  # the URL (password hidden) -> the full URL, of each database scheduled here


def fire(target: str, storage: str | None = None, url: str | None = None) -> None:
    """The scheduled job: queue a warm-started re-optimisation of ``target`` and launch its worker.

    A job stores its database's URL with the password hidden (``storage``); the full URL is the one the
    scheduler running the job was made with. ``url`` is how jobs stored before that held it.
    """
    url = url or _full_url(storage)
    try:
        run = queue_run(Repository(url), target, "scheduled")
    except (RunConflict, NotFound) as exc:
        log.warning("schedule for %s skipped: %s", target, exc)
        return
    launch(run.id, url)
    log.info("schedule for %s started run %s (study %s)", target, run.id, run.study_name)


def _full_url(storage: str | None) -> str:
    if storage in _urls:
        return _urls[storage]
    known = set(_urls.values())
    if len(known) == 1:  # the one database this process schedules on, spelt differently by the CLI
        return known.pop()
    return storage_url(storage)


def make_scheduler(url: str, running: bool) -> BackgroundScheduler:
    """A scheduler on the database's job table; ``running=False`` only edits jobs (the CLI)."""
    store = SQLAlchemyJobStore(engine=get_engine(url), tablename=JOBS_TABLE)
    scheduler = BackgroundScheduler(
        jobstores={"default": store, "memory": MemoryJobStore()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=timezone.utc,
    )
    scheduler.start(paused=True)
    _hide_stored_passwords(scheduler)
    if running:
        _urls[redacted(url)] = url
        # notice jobs that other processes add to the table
        scheduler.add_job(_noop, IntervalTrigger(seconds=WAKEUP_SECONDS), id="wakeup", jobstore="memory")
        scheduler.resume()
    return scheduler


def _hide_stored_passwords(scheduler: BackgroundScheduler) -> None:
    """Jobs stored before URLs were redacted kept the full URL; store it with the password hidden."""
    for job in scheduler.get_jobs(jobstore="default"):
        if "url" in job.kwargs:
            kwargs = {"target": job.kwargs.get("target", ""), "storage": redacted(job.kwargs["url"])}
            scheduler.modify_job(job.id, jobstore="default", kwargs=kwargs)


def _noop() -> None:
    """Waking the scheduler is all this job does."""


def add_schedule(
    scheduler: BackgroundScheduler, url: str, target: str, cron: str | None, every: float | None
) -> Schedule:
    if Repository(url).get_target(target) is None:
        raise NotFound(f"no target named {target!r}")
    trigger = trigger_for(cron, every)
    job = scheduler.add_job(
        "adaptive.scheduler:fire",
        trigger,
        kwargs={"target": target, "storage": redacted(url)},  # no password in the database
        id=f"reoptimise-{target}-{uuid.uuid4().hex[:8]}",
        name=f"reoptimise {target}",
        jobstore="default",
    )
    return _schedule(job)


def _schedule(job: Any) -> Schedule:
    return Schedule(
        job.id, job.kwargs.get("target", ""), str(job.trigger), getattr(job, "next_run_time", None)
    )


def list_schedules(scheduler: BackgroundScheduler, target: str | None = None) -> list[Schedule]:
    jobs = [_schedule(job) for job in scheduler.get_jobs(jobstore="default")]
    return [job for job in jobs if target is None or job.target == target]


def remove_schedule(scheduler: BackgroundScheduler, schedule_id: str) -> None:
    if scheduler.get_job(schedule_id, jobstore="default") is None:
        raise NotFound(f"no schedule {schedule_id!r}")
    scheduler.remove_job(schedule_id, jobstore="default")
