"""Scheduled re-optimisation: APScheduler jobs kept in the same database, so they survive restarts.

Only the service runs the scheduler; the CLI edits the same job store with a paused scheduler. The
service also wakes its scheduler every few seconds, so jobs added by another process are seen promptly.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from adaptive.runs import NotFound, RunConflict, launch, queue_run
from operators.errors import SettingsError
from storage.engine import get_engine
from storage.repository import Repository

JOBS_TABLE = "shaketune_schedules"
WAKEUP_SECONDS = 5
MIN_INTERVAL_SECONDS = 1
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
log = logging.getLogger("shaketune.scheduler")


@dataclass(frozen=True)
class Schedule:
    id: str
    target: str
    trigger: str
    next_run_time: datetime | None


MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 (and 7) is Sunday
_DOW_TERM = re.compile(r"^(?P<range>\*|(?P<first>\w+)(?:-(?P<last>\w+))?)(?:/(?P<step>\d+))?$", re.ASCII)


def _weekday(token: str) -> int:
    """A day as written: 0-7 (7 kept, so that a range can end on Sunday), or its name (0-6)."""
    token = token.lower()
    if token.isascii() and token.isdigit() and int(token) <= 7:
        return int(token)
    if token[:3] in WEEKDAYS and len(token) == 3:
        return WEEKDAYS.index(token)
    raise ValueError(f"day of week {token!r} is not 0-7 or sun-sat")


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field (0 and 7 Sunday, 1 Monday, ... 6 Saturday; names; lists, ranges,
    steps) as APScheduler's day_of_week, which counts from Monday: explicit day names, so no number is
    ever read with the other convention."""
    days: set[int] = set()
    for term in field.split(","):
        match = _DOW_TERM.match(term.strip())
        if not match:
            raise ValueError(f"malformed day of week {term!r}")
        step = int(match["step"] or 1)
        if step < 1:
            raise ValueError("a step must be at least 1")
        if match["range"] == "*":
            first, last = 0, 6
        else:
            first = _weekday(match["first"])
            last = _weekday(match["last"] or match["first"])
            if match["last"] is None and match["step"]:
                last = max(first, 6)  # 'a/n': from a to the end of the week
            if last < first:
                raise ValueError(f"day-of-week range {term!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(WEEKDAYS[day] for day in sorted(days, key=lambda d: (d - 1) % 7))


def cron_trigger(expression: str) -> Any:
    """A five-field crontab expression (minute hour day-of-month month day-of-week, UTC) read the way
    cron reads it: 0 and 7 are Sunday, and when both day fields are restricted a day matching either
    one fires (cron's rule), which APScheduler expresses as an OrTrigger of two cron triggers."""
    text = MACROS.get(expression.strip().lower(), expression.strip())
    if not text.isascii():
        raise ValueError("cron fields take ASCII digits, names and * , - / only")
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    common = {"minute": minute, "hour": hour, "month": month, "timezone": timezone.utc}
    weekdays = crontab_weekdays(weekday)
    if not day.startswith("*") and not weekday.startswith("*"):
        return OrTrigger([CronTrigger(day=day, **common), CronTrigger(day_of_week=weekdays, **common)])
    return CronTrigger(day=day, day_of_week=weekdays, **common)


def trigger_for(cron: str | None, every_seconds: float | None) -> Any:
    """A cron expression (five fields, UTC) or an interval in seconds: exactly one."""
    if (cron is None) == (every_seconds is None):
        raise SettingsError("give exactly one of a cron expression or an interval in seconds")
    if cron is not None:
        try:
            return cron_trigger(cron)
        except ValueError as exc:
            raise SettingsError(f"malformed cron expression {cron!r}: {exc}") from None
    if not MIN_INTERVAL_SECONDS <= every_seconds <= MAX_INTERVAL_SECONDS:
        raise SettingsError(
            f"interval must be between {MIN_INTERVAL_SECONDS} s and {MAX_INTERVAL_SECONDS} s (a year), "
            f"got {every_seconds}"
        )
    return IntervalTrigger(seconds=every_seconds, timezone=timezone.utc)


_service_url: str | None = None  # the database of the service whose scheduler runs in this process


def fire(target: str, url: str | None = None, **_: Any) -> None:
    """The scheduled job: queue a warm-started re-optimisation of ``target`` and launch its worker.

    The job's arguments are stored in the database, so they hold no URL (it may carry a password): the
    running service supplies its own. ``url`` is read only from jobs stored by older versions.
    """
    url = _service_url or url
    try:
        run = queue_run(Repository(url), target, "scheduled")
    except (RunConflict, NotFound) as exc:
        log.warning("schedule for %s skipped: %s", target, exc)
        return
    launch(run.id, url)
    log.info("schedule for %s started run %s (study %s)", target, run.id, run.study_name)


def stop_scheduler(scheduler: BackgroundScheduler, url: str) -> None:
    """Shut a service's scheduler down; its jobs no longer fire into ``url`` from this process (a later
    scheduler, or a firing without one, uses its own database)."""
    global _service_url
    scheduler.shutdown(wait=False)
    if _service_url == url:
        _service_url = None


def make_scheduler(url: str, running: bool) -> BackgroundScheduler:
    """A scheduler on the database's job table; ``running=False`` only edits jobs (the CLI)."""
    global _service_url
    if running:
        _service_url = url
    store = SQLAlchemyJobStore(engine=get_engine(url), tablename=JOBS_TABLE)
    scheduler = BackgroundScheduler(
        jobstores={"default": store, "memory": MemoryJobStore()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=timezone.utc,
    )
    scheduler.start(paused=True)
    _hide_stored_passwords(scheduler)
    if running:
        # notice jobs that other processes add to the table
        scheduler.add_job(_noop, IntervalTrigger(seconds=WAKEUP_SECONDS), id="wakeup", jobstore="memory")
        scheduler.resume()
    return scheduler


def _hide_stored_passwords(scheduler: BackgroundScheduler) -> None:
    """Jobs stored by older versions kept the database URL (and its password) in their arguments: drop it
    (the service running a job supplies its own URL)."""
    for job in scheduler.get_jobs(jobstore="default"):
        if "url" in job.kwargs or "storage" in job.kwargs:
            kwargs = {"target": job.kwargs.get("target", ""), "trigger": str(job.trigger)}
            scheduler.modify_job(job.id, jobstore="default", kwargs=kwargs)


def _noop() -> None:
    """Waking the scheduler is all this job does."""


def add_schedule(
    scheduler: BackgroundScheduler, url: str, target: str, cron: str | None, every: float | None
) -> Schedule:
    if Repository(url).get_target(target) is None:
        raise NotFound(f"no target named {target!r}")
    trigger = trigger_for(cron, every)
    described = f"cron '{' '.join(cron.split())}' (UTC)" if cron is not None else f"every {every:g} s"
    job = scheduler.add_job(
        "adaptive.scheduler:fire",
        trigger,
        kwargs={"target": target, "trigger": described},
        id=f"reoptimise-{target}-{uuid.uuid4().hex[:8]}",
        name=f"reoptimise {target}",
        jobstore="default",
    )
    return _schedule(job)


def _schedule(job: Any) -> Schedule:
    described = job.kwargs.get("trigger") or str(job.trigger)
    return Schedule(job.id, job.kwargs.get("target", ""), described, getattr(job, "next_run_time", None))


def list_schedules(scheduler: BackgroundScheduler, target: str | None = None) -> list[Schedule]:
    jobs = [_schedule(job) for job in scheduler.get_jobs(jobstore="default")]
    return [job for job in jobs if target is None or job.target == target]


def remove_schedule(scheduler: BackgroundScheduler, schedule_id: str) -> None:
    if scheduler.get_job(schedule_id, jobstore="default") is None:
        raise NotFound(f"no schedule {schedule_id!r}")
    scheduler.remove_job(schedule_id, jobstore="default")
