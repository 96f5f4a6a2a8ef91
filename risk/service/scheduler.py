"""`risk schedule`: the weekly job under APScheduler, in a long-running process.

The job lives in a persistent SQLAlchemy job store (the project database by
default), so a restarted process keeps it and its next run time; a run
missed while the process was down (by less than ``misfire_grace_s``) runs
once at start-up (``coalesce``). ``max_instances=1`` keeps one run per
process; the database run lock keeps one run per database, so two schedulers
on the same database never overlap: the second one finds the lock held and
skips. SIGTERM or SIGINT stops the process cleanly: a run in progress ends
at the next stage boundary (every stage commits or renames atomically) and
the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.jobstores.base import ConflictingIdError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from risk.core.cron import cron_trigger
from risk.core.errors import LockBusyError, OutputError, RiskError, StoppedError
from risk.core.settings import Settings, load_settings

JOB_ID = "risk-weekly-run"
log = logging.getLogger("risk.schedule")
_stop = threading.Event()


def weekly_job(config_path: str) -> None:
    """The scheduled job: one weekly run. Errors are logged, never raised, so the scheduler keeps going."""
    from risk.service.pipeline import run

    try:
        result = run(load_settings(config_path), stop=_stop)
    except LockBusyError as e:
        log.warning("skipped this run: %s", e)
    except StoppedError as e:
        log.warning("run stopped: %s", e)
    except RiskError as e:
        log.error("run failed: %s", str(e).splitlines()[0])
    else:
        log.info("run %s finished as of %s: %d tracts, %d alerts, %d e-mails sent, %d failed", result.run_id,
                 result.as_of, result.tracts, result.alerts, result.emails_sent, result.emails_failed)


def _database_url(settings: Settings) -> str:
    text = settings.schedule.job_store or settings.paths.database
    return text if "://" in text else f"sqlite:///{text}"


def trigger(settings: Settings) -> BaseTrigger:
    """The configured trigger: every N seconds, or the cron expression in its time zone."""
    zone = ZoneInfo(settings.schedule.timezone)
    if settings.schedule.every_s:
        return IntervalTrigger(seconds=settings.schedule.every_s, timezone=zone)
    return cron_trigger(settings.schedule.cron, zone)


def _same(a: BaseTrigger, b: BaseTrigger) -> bool:
    # str() leaves the time zone out, and an interval trigger's repr() carries its start time
    return str(a) == str(b) and str(getattr(a, "timezone", "")) == str(getattr(b, "timezone", ""))


def _create_job_table(store: SQLAlchemyJobStore) -> None:
    """Create the job table now: two schedulers starting together would otherwise both try, and one fail."""
    for attempt in range(3):
        try:
            store.jobs_t.create(store.engine, checkfirst=True)
            return
        except (OperationalError, IntegrityError, ProgrammingError):
            # SQLite says "already exists"; PostgreSQL may also trip over its catalogue's unique index
            if attempt == 2:
                raise
            time.sleep(0.2)  # the other scheduler created it between our check and our create


def build_scheduler(settings: Settings) -> BackgroundScheduler:
    """A scheduler with the persistent job store and the job defaults the weekly job needs."""
    from risk.core.store import engine_for

    engine_for(settings.paths.database, settings.paths.database_busy_timeout_s)  # the folder and our tables
    try:
        store = SQLAlchemyJobStore(url=_database_url(settings))
        _create_job_table(store)
    except Exception as e:  # SQLAlchemy raises several kinds for a URL it cannot use  # noqa: BLE001
        raise OutputError(f"schedule.job_store: cannot open {_database_url(settings)!r}: {e}") from e
    return BackgroundScheduler(
        jobstores={"default": store},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.schedule.misfire_grace_s},
        timezone=ZoneInfo(settings.schedule.timezone),
    )


def ensure_job(scheduler: BackgroundScheduler, settings: Settings, config_path: Path) -> str:
    """Add the weekly job, or keep the stored one (and its next run time) if the trigger is unchanged."""
    wanted = trigger(settings)
    args = [str(config_path.resolve())]
    job = scheduler.get_job(JOB_ID)
    if job is None:
        try:
            scheduler.add_job(weekly_job, wanted, args=args, id=JOB_ID, name="weekly run")
            return "added the weekly job"
        except ConflictingIdError:  # another scheduler on this store added it a moment ago
            job = scheduler.get_job(JOB_ID)
    if job is None:
        raise OutputError("the weekly job vanished from the job store while starting; start again")
    if not _same(job.trigger, wanted) or list(job.args) != args:
        scheduler.modify_job(JOB_ID, args=args)
        scheduler.reschedule_job(JOB_ID, trigger=wanted)
        return "updated the stored job to the configured schedule"
    return f"kept the stored job (next run {job.next_run_time:%Y-%m-%d %H:%M:%S %Z})"


def serve(settings: Settings, config_path: Path) -> None:
    """Run the scheduler until SIGTERM or SIGINT."""
    _stop.clear()

    def request_stop(signum: int, _frame: object) -> None:
        log.warning("%s received: stopping after the current stage", signal.Signals(signum).name)
        _stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)  # paused: look at the stored job before anything fires
    try:
        log.info(ensure_job(scheduler, settings, config_path))
        scheduler.resume()
        job = scheduler.get_job(JOB_ID)
        if job is not None and job.next_run_time is not None:
            log.info("scheduler started; next run %s", f"{job.next_run_time:%Y-%m-%d %H:%M:%S %Z}")
        _stop.wait()
    finally:
        scheduler.shutdown(wait=True)  # waits for a run in progress, which ends at its next stage boundary
        log.info("scheduler stopped")
