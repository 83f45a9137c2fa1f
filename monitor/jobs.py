"""Every scheduled job of the monitor, in one table: what runs when, and where its timing is set.

The monitor runs one APScheduler 3 ``AsyncIOScheduler`` (UTC). :data:`JOBS` lists every
job it may schedule; :func:`schedule` adds the ones the running parts hand a runner
for (the terminal registry reload only when ``health.terminals_path`` is set).
``docs/operations.md`` ("Scheduled jobs") shows the same table to operators, and
``tests/test_jobs.py`` checks that the app schedules nothing this table does not list.

Timing comes from the frozen settings (:mod:`monitor.config`), except:

* ``alert-digests`` runs at second 0 of every minute (a cron trigger, not a setting):
  each manager's ``digest_at`` is a local ``HH:MM``, so the check must land on each minute;
* ``recovery-follow-ups`` runs every :data:`RECOVERY_FOLLOW_UPS_SECONDS` (fixed): a
  decided recovery watch's follow-up should reach the manager within seconds;
* ``silent_detection`` runs every ``silent.interval_seconds`` of ``rules/health.yaml``
  and skips a run later than ``silent.misfire_grace_seconds``: silent-terminal policy,
  which lives with the other ``silent`` thresholds in that rule file.

No job does heavy work on the event loop: a plain function runs on a scheduler thread,
the store jobs' coroutines hand their queries to a thread, and terminal health's two
polars jobs (``silent_detection``, ``health_evaluate``) only await the health thread
(:class:`monitor.health.worker.HealthWorker`), which owns the book and the detector.

Runs are never queued: one instance of a job at a time (``max_instances=1``); a run
due while the previous one still runs is skipped. Every job's runs are counted in
``cardmon_scheduler_job_events_total{job, event}``
(:class:`monitor.health.scheduling.SchedulerJobMetrics`), its ``job`` label being the
job ID below.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler

from monitor.alerts.store.db import is_transient
from monitor.config import Settings
from monitor.health.scheduling import (
    EVALUATE_JOB,
    SILENT_DETECTION_JOB,
    TERMINAL_REGISTRY_JOB,
    OnSilent,
    RunOffLoop,
    silent_detection,
)
from monitor.health.silent import SilentDetector, SilentRules

__all__ = [
    "DIGESTS_JOB",
    "ESCALATION_JOB",
    "JOBS",
    "RECOVERY_FOLLOW_UPS_JOB",
    "RECOVERY_FOLLOW_UPS_SECONDS",
    "RECOVERY_JOB",
    "REGISTRY_RELOAD_JOB",
    "STORE_GAUGES_JOB",
    "SUMMARIES_JOB",
    "TERMINAL_IMPACT_JOB",
    "WORKSPACE_PURGE_JOB",
    "ScheduledJob",
    "StoreJobGuard",
    "Timing",
    "schedule",
    "schedule_silent_detection",
]

#: Job IDs (and ``job`` label values) of the alerting side; the health side's are in
#: :mod:`monitor.health.scheduling`.
REGISTRY_RELOAD_JOB: Final = "registry-reload"
STORE_GAUGES_JOB: Final = "outbox-gauge"
DIGESTS_JOB: Final = "alert-digests"
SUMMARIES_JOB: Final = "alert-summaries"
ESCALATION_JOB: Final = "alert-escalation"
WORKSPACE_PURGE_JOB: Final = "workspace-purge"
TERMINAL_IMPACT_JOB: Final = "terminal-impact"
RECOVERY_JOB: Final = "recovery-watch"
RECOVERY_FOLLOW_UPS_JOB: Final = "recovery-follow-ups"
#: Seconds between two passes of the recovery follow-ups: a few, so the manager learns of
#: a recovery soon after it; a pass with nothing decided is one indexed query.
RECOVERY_FOLLOW_UPS_SECONDS: Final = 5.0

#: A runner: a function (run on a scheduler thread) or a coroutine function (run on the loop).
Runner = Callable[[], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Where job timing is read from.

    Attributes:
        settings: the frozen settings (every job but ``silent_detection``).
        silent: the ``silent`` section of ``rules/health.yaml`` (``silent_detection``).
    """

    settings: Settings | None = None
    silent: SilentRules | None = None

    def need_settings(self) -> Settings:
        """The settings (raises ``ValueError`` when a job needs them and they were not given)."""
        if self.settings is None:
            raise ValueError("this job's interval comes from the settings; none were given")
        return self.settings

    def need_silent(self) -> SilentRules:
        """The silent rules (raises ``ValueError`` when they were not given)."""
        if self.silent is None:
            raise ValueError("silent detection's interval comes from rules/health.yaml; none was given")
        return self.silent


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledJob:
    """One row of the job table.

    Attributes:
        job_id: the APScheduler job ID and the ``job`` metric label.
        what: what one run does, in one line.
        every: where its timing is set, for people (a settings key or a rule).
        trigger: the APScheduler trigger and its timing arguments, from :class:`Timing`.
        options: the other ``add_job`` arguments (``max_instances``, ``coalesce``...).
    """

    job_id: str
    what: str
    every: str
    trigger: Callable[[Timing], dict[str, Any]]
    options: Mapping[str, Any] = field(default_factory=lambda: {"max_instances": 1, "coalesce": True})

    def add(self, scheduler: BaseScheduler, runner: Runner, timing: Timing, *,
            job_id: str | None = None) -> Job:
        """Add this job to ``scheduler`` with ``runner`` (``job_id`` overrides the ID)."""
        return scheduler.add_job(runner, id=job_id or self.job_id, **self.trigger(timing),
                                 **self.options)


def _every(seconds: float) -> dict[str, Any]:
    return {"trigger": "interval", "seconds": seconds}


def _silent(timing: Timing) -> dict[str, Any]:
    rules = timing.need_silent()
    return {**_every(rules.interval_seconds), "misfire_grace_time": rules.misfire_grace_seconds}


#: Every job the monitor may schedule, in the order it schedules them.
JOBS: Final[tuple[ScheduledJob, ...]] = (
    ScheduledJob(
        job_id=REGISTRY_RELOAD_JOB, what="reread the VIP registry files if either changed",
        every="registry.reload_interval_seconds",
        trigger=lambda t: _every(t.need_settings().registry.reload_interval_seconds)),
    ScheduledJob(
        job_id=STORE_GAUGES_JOB,
        what="refresh the gauges read from the alert store (outbox, failed deliveries, "
             "alerts by state, incidents)",
        every="metrics.store_gauges_interval_seconds",
        trigger=lambda t: _every(t.need_settings().metrics.store_gauges_interval_seconds)),
    ScheduledJob(
        job_id=TERMINAL_IMPACT_JOB,
        what="re-read the terminals that hurt VIP clients most (24 h and 7 days) for the "
             "repair-priority gauges",
        every="metrics.terminal_impact_interval_seconds",
        trigger=lambda t: _every(t.need_settings().metrics.terminal_impact_interval_seconds)),
    ScheduledJob(
        job_id=DIGESTS_JOB, what="claim and enqueue the daily digests that are due",
        every="second 0 of every minute (fixed: digest_at is a local HH:MM)",
        trigger=lambda t: {"trigger": "cron", "minute": "*", "second": 0}),
    ScheduledJob(
        job_id=SUMMARIES_JOB, what="claim and enqueue the rate-cap summaries that are due",
        every="alerting.summary_interval_seconds",
        trigger=lambda t: _every(t.need_settings().alerting.summary_interval_seconds)),
    ScheduledJob(
        job_id=RECOVERY_FOLLOW_UPS_JOB,
        what="queue one follow-up message per decided recovery watch (managers who opted in)",
        every="5 s (fixed: RECOVERY_FOLLOW_UPS_SECONDS; only with "
              "alerting.recovery_window_seconds)",
        trigger=lambda t: _every(RECOVERY_FOLLOW_UPS_SECONDS)),
    ScheduledJob(
        job_id=ESCALATION_JOB, what="escalate unacknowledged alerts whose next step is due",
        every="alerting.escalation_interval_seconds",
        trigger=lambda t: _every(t.need_settings().alerting.escalation_interval_seconds)),
    ScheduledJob(
        job_id=RECOVERY_JOB,
        what="match buffered VIP approvals to recovery watches and abandon the watches event "
             "time has passed (also after every batch; this covers a quiet stream)",
        every="alerting.recovery_interval_seconds (only with alerting.recovery_window_seconds)",
        trigger=lambda t: _every(t.need_settings().alerting.recovery_interval_seconds)),
    ScheduledJob(
        job_id=WORKSPACE_PURGE_JOB,
        what="delete used sign-in links and workspace sessions past their expiry",
        every="workspace.purge_interval_seconds (only with workspace.enabled)",
        trigger=lambda t: _every(t.need_settings().workspace.purge_interval_seconds)),
    ScheduledJob(
        job_id=SILENT_DETECTION_JOB, what="find terminals that went silent in their opening hours",
        every="rules/health.yaml silent.interval_seconds (late runs: silent.misfire_grace_seconds)",
        trigger=_silent,
        # coalesce=False: every skipped run is counted as missed, not folded into the next.
        options={"name": "silent-terminal detection", "max_instances": 1, "coalesce": False,
                 "replace_existing": True}),
    ScheduledJob(
        job_id=EVALUATE_JOB, what="recompute every terminal's health state",
        every="health.evaluate_interval_seconds",
        trigger=lambda t: _every(t.need_settings().health.evaluate_interval_seconds)),
    ScheduledJob(
        job_id=TERMINAL_REGISTRY_JOB, what="reread the terminal registry file if it changed",
        every="health.terminals_reload_interval_seconds (only with health.terminals_path)",
        trigger=lambda t: _every(t.need_settings().health.terminals_reload_interval_seconds)),
)

_BY_ID: Final[dict[str, ScheduledJob]] = {job.job_id: job for job in JOBS}


def schedule(scheduler: BaseScheduler, runners: Mapping[str, Runner], timing: Timing) -> list[Job]:
    """Add a job for each runner, timed as :data:`JOBS` says, in the table's order.

    Args:
        scheduler: an APScheduler 3 scheduler (started or not).
        runners: job ID → what one run calls; a job without a runner is not scheduled.
        timing: the settings and rules the intervals come from.

    Returns:
        The jobs added.

    Raises:
        KeyError: a runner is given for a job the table does not list.
    """
    unknown = sorted(set(runners) - set(_BY_ID))
    if unknown:
        raise KeyError(f"job(s) not in monitor/jobs.py JOBS: {', '.join(unknown)}")
    return [job.add(scheduler, runners[job.job_id], timing) for job in JOBS if job.job_id in runners]


def schedule_silent_detection(
    scheduler: BaseScheduler, detector: SilentDetector, on_silent: OnSilent, *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    job_id: str = SILENT_DETECTION_JOB,
    run: RunOffLoop | None = None,
) -> Job:
    """Add the silent-detection job alone (its row of :data:`JOBS`), e.g. beside another scheduler's jobs.

    The job is a coroutine run by the ``AsyncIOScheduler`` on the event loop; the
    evaluation runs where ``run`` puts it (the health thread:
    :meth:`monitor.health.worker.HealthWorker.call`), or in the job itself without
    ``run`` (then the detector must be fed on that loop too). A run later than
    ``rules.misfire_grace_seconds`` is skipped and counted as missed.

    Args:
        scheduler: an APScheduler 3 scheduler (started or not).
        detector: the detector; its rules give the interval and the grace time.
        on_silent: called with ``(silent terminal IDs, now)`` after each evaluation,
            awaited if it returns an awaitable.
        clock: the wall clock (aware datetimes).
        job_id: the job's ID and metric label.
        run: runs the evaluation off the loop (see :func:`silent_detection`), or ``None``.

    Returns:
        The scheduled :class:`apscheduler.job.Job`.
    """
    return _BY_ID[SILENT_DETECTION_JOB].add(
        scheduler, silent_detection(detector, on_silent, clock=clock, run=run),
        Timing(silent=detector.rules), job_id=job_id)


# Seconds between two reports of one scheduled job's store outage (the first is at once).
_OUTAGE_REPORT_SECONDS: Final = 60.0
log = logging.getLogger(__name__)


class StoreJobGuard:
    """Wraps scheduled jobs so that an unavailable store is a line in the log, not a traceback a run.

    A transient store error (:func:`monitor.alerts.store.db.is_transient`) is logged once
    when it starts, then at most once a minute, and its end once; the job runs again
    at its next interval (its interval is its backoff). Other errors propagate to the
    scheduler, which logs them.
    """

    def __init__(self) -> None:
        self._failing: dict[str, float] = {}  # <job name: time.monotonic() of its last report>

    def _failed(self, name: str, error: Exception) -> None:
        if not is_transient(error):
            raise error
        now = time.monotonic()
        last = self._failing.get(name)
        if last is None or now - last >= _OUTAGE_REPORT_SECONDS:
            self._failing[name] = now
            log.warning("%s skipped: the alert store is unavailable (%s: %s); it runs again "
                        "at its next interval", name, type(error).__name__, error)

    def _ok(self, name: str) -> None:
        if self._failing.pop(name, None) is not None:
            log.info("%s: the alert store is back", name)

    def sync(self, name: str, job: Callable[[], None]) -> Callable[[], None]:
        """``job`` (run on a scheduler thread), guarded."""
        @functools.wraps(job)
        def run() -> None:
            try:
                job()
            except Exception as error:  # noqa: BLE001 - re-raised unless transient
                self._failed(name, error)
            else:
                self._ok(name)
        return run

    def coroutine(self, name: str, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``job`` (a coroutine run on the loop), guarded."""
        @functools.wraps(job)
        async def run() -> None:
            try:
                await job()
            except Exception as error:  # noqa: BLE001 - re-raised unless transient
                self._failed(name, error)
            else:
                self._ok(name)
        return run
