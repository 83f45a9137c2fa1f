"""Terminal health as one running part of the monitor.

:class:`TerminalHealthService` owns the terminal registry, the health book, the
silent-terminal detector, the device-status consumer and their Prometheus
collectors, so :class:`monitor.app.MonitorApp` only has to:

1. pass :attr:`observers` to the batch processor (every classified batch frame is
   handed to the health thread, which feeds the book's windows and the detector);
2. schedule :meth:`jobs` (silent detection, state evaluation, terminal-registry
   reloads) from the job table :data:`monitor.jobs.JOBS`, and :meth:`count_job_runs`;
3. ``await`` :meth:`run` beside the transaction consumer (device status topic), and
   :meth:`stop` at the end (it also ends the health thread).

Nothing of terminal health's polars work runs on the event loop: the book and the
detector have one writer, the health thread (:class:`~monitor.health.worker.HealthWorker`):
batches, device status changes, silent marks and both evaluations run there in the
order they were submitted; the scheduled jobs only await them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from prometheus_client import CollectorRegistry

from monitor.config import HealthSettings, KafkaSettings
from monitor.errors import ConfigurationError
from monitor.health.baseline import Baseline
from monitor.health.collector import HealthCollector
from monitor.health.device_status import DeviceStatusBook, DeviceStatusEvent, StatusConsumer
from monitor.health.scheduling import (
    EVALUATE_JOB,
    SILENT_DETECTION_JOB,
    TERMINAL_REGISTRY_JOB,
    SchedulerJobMetrics,
    silent_detection,
)
from monitor.health.silent import SilentDetector, SilentRules
from monitor.health.state import HealthBook, HealthRules
from monitor.health.terminals import TerminalRegistryLoader
from monitor.health.worker import HealthWorker, HealthWorkerClosed
from monitor.kafka.clients import ensure_topics
from monitor.metrics import FrameCollector
from monitor.paths import rules_path
from monitor.pipeline.consumer import ConsumerMetrics
from monitor.pipeline.watermark import EventClock
from monitor.rulebook import RuleFile

__all__ = ["TerminalHealthService"]

log = logging.getLogger(__name__)


class _StatusMetrics:
    """The pipeline metrics the status consumer may move: not the transaction counters."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self._metrics = metrics
        self.faults = metrics.faults  # unreadable partitions, retries: labelled by topic

    def observe_rejections(self, reasons: dict[str, int]) -> None:
        self._metrics.observe_rejections(reasons)

    def observe_dead_letters(self, reasons: dict[str, int]) -> None:
        self._metrics.observe_dead_letters(reasons)

    def observe_batch_duration(self, seconds: float, size: int) -> None:
        """Not counted: ``cardmon_events_consumed_total`` is the transaction topic's."""

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self._metrics.set_lag(topic, partition, lag)

    def forget_lag(self, topic: str, partition: int) -> None:
        self._metrics.forget_lag(topic, partition)


class TerminalHealthService:
    """Health states of every terminal, kept current from transactions and device status.

    Args:
        settings: the ``health`` section.
        kafka: the transaction consumer's Kafka settings (the status consumer copies
            them with its own topic, dead-letter topic and group).
        registry: the Prometheus registry the health collectors are registered in.
        metrics: pipeline metrics for the status topic's rejections, dead letters and lag.
        clock: the transaction pipeline's event time (silent detection folds an hour
            into the baseline once the watermark has passed it), or ``None``.

    Attributes:
        worker: the health thread that owns the book and the detector.
        wall_clock: the ``now`` the scheduled jobs evaluate at (aware; a benchmark
            replaying event time replaces it).

    Raises:
        monitor.health.terminals.TerminalRegistryError: the terminal registry is invalid.
        ValueError: ``rules/health.yaml`` is invalid.
    """

    def __init__(self, settings: HealthSettings, kafka: KafkaSettings, *,
                 registry: CollectorRegistry, metrics: ConsumerMetrics | None = None,
                 clock: EventClock | None = None) -> None:
        self.settings = settings
        # rules/health.yaml is read once; the book and the detector each take their sections.
        rules = RuleFile.read(settings.rules_path or rules_path("health.yaml"), error=ConfigurationError,
                              what="health rules")
        self.terminals = TerminalRegistryLoader(settings.terminals_path)
        self.book = HealthBook(HealthRules.from_rules(rules), registry=self.terminals)
        baseline = Baseline.read(settings.baseline_path) if settings.baseline_path else None
        self.detector = SilentDetector(SilentRules.from_rules(rules), baseline, registry=self.terminals,
                                       clock=clock)
        # The per-terminal state gauge goes through the fast text exposition (100,000
        # terminals in milliseconds); the fleet-level families through prometheus_client.
        self.collector = HealthCollector(self.book, terminal_states=False)
        registry.register(self.collector)
        self.state_collector = FrameCollector(
            "cardmon_terminal_health_state",
            "Health state of the terminal (ISO 8583 field 41): 0 ok, 1 degraded, 2 failing, "
            "3 silent, 4 offline; rules in rules/health.yaml.",
            "gauge", source=self.book.terminal_state_frame)
        registry.register(self.state_collector)
        self.job_metrics = SchedulerJobMetrics(registry)
        self.worker = HealthWorker((self.book, self.detector))
        self.wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.status: StatusConsumer | None = None
        if settings.consume_status:
            status_kafka = kafka.model_copy(update={
                "topic": settings.status_topic,
                "dead_letter_topic": settings.status_dead_letter_topic,
                "group_id": f"{kafka.group_id}.terminal-status",  # own group: no shared rebalances
            })
            self.status = StatusConsumer(
                status_kafka, book=DeviceStatusBook(), on_change=self._apply_status,
                metrics=_StatusMetrics(metrics) if metrics is not None else None)

    @property
    def observers(self) -> tuple[Any, ...]:
        """What the batch processor feeds each classified frame to: the health thread."""
        return (self.worker,)

    def _apply_status(self, events: list[DeviceStatusEvent]) -> None:
        """Device status changes go to the book on the health thread (after the batches before them)."""
        try:
            self.worker.submit(self.book.apply_status, list(events))
        except HealthWorkerClosed:
            log.debug("terminal health stopped: %d device status change(s) not applied", len(events))

    def load(self) -> None:
        """Read the terminal registry (raises on a bad file at start)."""
        if self.settings.terminals_path is not None:
            self.terminals.load()

    def jobs(self) -> dict[str, Callable[[], Any]]:
        """What each of terminal health's scheduled jobs runs, by job ID.

        Their timing is in the job table (:data:`monitor.jobs.JOBS`): silent detection,
        state evaluation, and the terminal registry reload (only with ``terminals_path``).
        """

        worker = self.worker

        async def evaluate() -> None:  # the loop only awaits the health thread
            try:
                await worker.call(self.evaluate, self.wall_clock())
            except HealthWorkerClosed:
                log.debug("terminal health stopped: no evaluation")

        async def mark_silent(ids: set[str], at: datetime) -> None:
            await worker.call(self.book.mark_silent, ids, at)

        detect = silent_detection(self.detector, mark_silent, clock=lambda: self.wall_clock(),
                                  run=worker.call)

        async def detect_silent() -> None:
            try:
                await detect()
            except HealthWorkerClosed:
                log.debug("terminal health stopped: no silent detection")

        runners: dict[str, Callable[[], Any]] = {
            SILENT_DETECTION_JOB: detect_silent,
            EVALUATE_JOB: evaluate,
        }
        if self.settings.terminals_path is not None:
            runners[TERMINAL_REGISTRY_JOB] = self.terminals.reload_if_changed
        return runners

    def evaluate(self, now: datetime) -> None:
        """Evaluate the book, then render its families for the next scrape (on the health thread).

        Rendering ahead is an optimisation: if it fails, it is logged and the scrape renders.
        """
        self.book.evaluate(now)
        try:
            self.collector.prepare()
            self.state_collector.prepare()
        except Exception:  # the scrape renders them itself
            log.exception("rendering the health families ahead of the scrape failed")

    def count_job_runs(self, scheduler: BaseScheduler) -> None:
        """Count every job event of ``scheduler`` (``cardmon_scheduler_job_events_total``).

        Terminal health's jobs get their series at 0 now, so the first ``missed`` is an increase.
        """
        self.job_metrics.attach(scheduler, jobs=(SILENT_DETECTION_JOB, EVALUATE_JOB,
                                                 TERMINAL_REGISTRY_JOB))

    async def start(self, *, create_topics: bool = True) -> None:
        """Join the device-status consumer group (if status is consumed)."""
        if self.status is None:
            return
        if create_topics:
            await ensure_topics(self.status.settings)
        await self.status.start()

    async def run(self, stop: Any) -> None:
        """Consume device status until ``stop`` (an ``asyncio.Event``) is set."""
        if self.status is not None:
            await self.status.run(stop)

    async def stop(self) -> None:
        """Leave the status consumer group, then end the health thread (a running evaluation finishes)."""
        try:
            if self.status is not None:
                await self.status.stop()
        finally:
            await asyncio.to_thread(self.worker.close)
