"""Scheduled health jobs (APScheduler 3) and the metric that counts how their runs went.

Every job event APScheduler emits for a job is counted in
``cardmon_scheduler_job_events_total{job, event}``:

* ``executed``: a run finished (``EVENT_JOB_EXECUTED``);
* ``missed``: a run started later than its ``misfire_grace_time`` and was skipped
  (``EVENT_JOB_MISSED``) — the event loop was blocked or the process paused;
* ``max_instances``: a run was due while the previous one still ran and was
  skipped (``EVENT_JOB_MAX_INSTANCES``) — the job takes longer than its interval;
* ``error``: a run raised (``EVENT_JOB_ERROR``); the traceback is logged by APScheduler.

Label values are job IDs (a handful, fixed in code), never terminal or card data.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler
from prometheus_client import CollectorRegistry, Counter

from monitor.health.silent import SilentDetector

__all__ = ["SILENT_DETECTION_JOB", "SchedulerJobMetrics", "schedule_silent_detection"]

log = logging.getLogger(__name__)

#: Job ID (and ``job`` label value) of the silent-terminal detection job.
SILENT_DETECTION_JOB: Final = "silent_detection"

#: APScheduler event code → ``event`` label value.
_EVENTS: Final = {
    EVENT_JOB_EXECUTED: "executed",
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "max_instances",
    EVENT_JOB_ERROR: "error",
}
_MASK: Final = EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR

#: What the detection job hands the silent IDs to (e.g. ``HealthBook.mark_silent``).
OnSilent = Callable[[set[str], datetime], Awaitable[object] | object]


class SchedulerJobMetrics:
    """``cardmon_scheduler_job_events_total{job,event}``, fed by scheduler listeners.

    Args:
        registry: the Prometheus registry to register the counter in.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "cardmon_scheduler_job_events",
            "Scheduled job events: executed, missed (started too late), max_instances "
            "(previous run still running), error.",
            ["job", "event"], registry=registry,
        )

    def attach(self, scheduler: BaseScheduler, *, jobs: tuple[str, ...] = ()) -> None:
        """Count every job event of ``scheduler``; ``jobs`` get their four series at 0 now.

        Pre-created series let Prometheus see the first ``missed`` as an increase.
        """
        for job in jobs:
            for event in _EVENTS.values():
                self.events.labels(job=job, event=event)
        scheduler.add_listener(self._on_event, _MASK)

    def _on_event(self, event: JobEvent) -> None:
        name = _EVENTS.get(event.code)
        if name is not None:
            self.events.labels(job=event.job_id, event=name).inc()


def schedule_silent_detection(
    scheduler: BaseScheduler, detector: SilentDetector, on_silent: OnSilent, *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    job_id: str = SILENT_DETECTION_JOB,
) -> Job:
    """Add the interval job that runs :meth:`SilentDetector.evaluate` and reports the result.

    The job is a coroutine, so with an ``AsyncIOScheduler`` it runs on the event loop
    that also feeds the detector (no locking needed). Runs are never queued up: one
    instance at a time (``max_instances=1``), and a run later than
    ``rules.misfire_grace_seconds`` is skipped and counted as missed (``coalesce=False``:
    every skipped run is counted, not folded into the next one).

    Args:
        scheduler: an APScheduler 3 scheduler (started or not).
        detector: the detector; its rules give the interval and the grace time.
        on_silent: called with ``(silent terminal IDs, now)`` after each evaluation,
            awaited if it returns an awaitable.
        clock: the wall clock (aware datetimes).
        job_id: the job's ID and metric label.

    Returns:
        The scheduled :class:`apscheduler.job.Job`.
    """
    rules = detector.rules

    async def detect_silent_terminals() -> None:
        now = clock()
        silent = detector.evaluate(now)
        result = on_silent(silent, now)
        if inspect.isawaitable(result):
            await result
        if silent:
            log.info("%d silent terminal(s)", len(silent))

    return scheduler.add_job(
        detect_silent_terminals, "interval", seconds=rules.interval_seconds, id=job_id,
        name="silent-terminal detection", max_instances=1, coalesce=False,
        misfire_grace_time=rules.misfire_grace_seconds, replace_existing=True,
    )
