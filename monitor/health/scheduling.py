"""Terminal health's scheduled jobs (APScheduler 3): their IDs, the silent-detection run, and the
metric that counts how every job's runs went (the job table itself is :mod:`monitor.jobs`).

Every job event APScheduler emits for a job is counted in
``cardmon_scheduler_job_events_total{job, event}``:

* ``executed``: a run finished (``EVENT_JOB_EXECUTED``);
* ``missed``: a run started later than its ``misfire_grace_time`` and was skipped
  (``EVENT_JOB_MISSED``) — the event loop was blocked or the process paused;
* ``max_instances``: a run was due while the previous one still ran and was
  skipped (``EVENT_JOB_MAX_INSTANCES``) — the job takes longer than its interval;
* ``error``: a run raised (``EVENT_JOB_ERROR``); the traceback is logged by APScheduler.

Label values are job IDs (a handful, fixed in code: :data:`monitor.jobs.JOBS`), never
terminal or card data.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.base import BaseScheduler
from prometheus_client import CollectorRegistry, Counter

from monitor.health.silent import SilentDetector

__all__ = [
    "EVALUATE_JOB",
    "SILENT_DETECTION_JOB",
    "TERMINAL_REGISTRY_JOB",
    "OnSilent",
    "RunOffLoop",
    "SchedulerJobMetrics",
    "silent_detection",
]

log = logging.getLogger(__name__)

#: Job IDs (and ``job`` label values) of terminal health; their rows, with their
#: intervals, are in the job table :data:`monitor.jobs.JOBS`.
SILENT_DETECTION_JOB: Final = "silent_detection"
EVALUATE_JOB: Final = "health_evaluate"
TERMINAL_REGISTRY_JOB: Final = "terminal_registry_reload"

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
#: Runs ``function(*args)`` elsewhere and returns an awaitable of its result, e.g.
#: :meth:`monitor.health.worker.HealthWorker.call` (the health thread).
RunOffLoop = Callable[..., Awaitable[Any]]


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


def silent_detection(
    detector: SilentDetector, on_silent: OnSilent, *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    run: RunOffLoop | None = None,
) -> Callable[[], Awaitable[None]]:
    """The silent-detection job's run: :meth:`SilentDetector.evaluate`, then report the result.

    The run is a coroutine, scheduled from the job table, :data:`monitor.jobs.JOBS`
    (every ``rules.interval_seconds``). With ``run`` (the monitor passes the health
    thread's :meth:`~monitor.health.worker.HealthWorker.call`), the evaluation runs
    where ``run`` puts it, on the thread that also feeds the detector, and the loop
    only awaits it; without, it runs on the event loop, in the job itself (only right
    when the detector is fed on that loop too: one writer, no locking).

    Args:
        detector: the detector.
        on_silent: called with ``(silent terminal IDs, now)`` after each evaluation,
            awaited if it returns an awaitable.
        clock: the wall clock (aware datetimes).
        run: runs ``detector.evaluate(now)`` off the loop and returns an awaitable of
            its result, or ``None``.

    Returns:
        A coroutine function taking no arguments.
    """

    async def detect_silent_terminals() -> None:
        now = clock()
        silent = detector.evaluate(now) if run is None else await run(detector.evaluate, now)
        result = on_silent(silent, now)
        if inspect.isawaitable(result):
            await result
        if silent:
            log.info("%d silent terminal(s)", len(silent))

    return detect_silent_terminals
