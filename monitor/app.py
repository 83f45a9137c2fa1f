"""Wire the monitor together from :class:`~monitor.config.Settings` and run it.

``MonitorApp`` owns the long-running parts: the transaction consumer, the
delivery worker, terminal health (device-status consumer, silent detection, state
evaluation), the ``/metrics`` server and the scheduler (registry reloads, health
jobs). ``run`` starts them, waits for a stop signal, and stops them in reverse order.

Shutdown (the stop signal: SIGTERM, SIGINT), step by step; every step is bounded,
and one that fails or overruns is logged and passed, never skipped past the rest:

1. stop consuming and leave the group (uncommitted batches are redelivered to the
   next owner), stop terminal health;
2. let the delivery worker finish its in-flight sends and record them, for up to
   ``alerting.shutdown_drain_seconds`` from the signal; then cancel what is left
   (those rows are sent again after a restart, with the same Idempotency-Key);
3. stop the scheduler, the ``/metrics`` server and the alert API;
4. close the alert store (a call still waiting on the database is interrupted).

A scheduled job that meets an unavailable alert store logs one line (then one a
minute while it lasts) and runs again at its next interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import BaseScheduler
from prometheus_client import CollectorRegistry

from monitor import jobs
from monitor.alerts.delivery.configured import build_channels, build_fallback
from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.jobs import digests_due, escalate_due, summaries_due
from monitor.alerts.lifecycle import EscalationPolicy
from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.routing import MANAGER_CHANNEL_KINDS, unreachable_managers
from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import Database
from monitor.alerts.store.fleet_counts import FleetCounts
from monitor.api import ApiServer, build_api, start_api
from monitor.config import Settings
from monitor.domain import VipFailure
from monitor.health.service import TerminalHealthService
from monitor.incidents import IncidentChange, IncidentDetector, IncidentRules
from monitor.kafka.clients import ensure_topics
from monitor.metrics import (
    AlertLifecycleMetrics,
    DeliveryMetrics,
    PipelineMetrics,
    RecoveryMetrics,
    ScaleOutMetrics,
    StormMetrics,
    TerminalImpactMetrics,
    serve,
)
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.fleet import FleetIncidents
from monitor.pipeline.processor import BatchProcessor
from monitor.pipeline.recovery import RecoveryWatch
from monitor.pipeline.selection import AlertPolicy, read_policy_file
from monitor.pipeline.vips import RegistryLoader
from monitor.pipeline.watermark import EventClock
from monitor.workspace import configured_workspace

__all__ = ["MonitorApp"]

log = logging.getLogger(__name__)
R = TypeVar("R")

# Bounds of the shutdown steps that do not drain anything (seconds).
_STOP_STEP_SECONDS: Final = 10.0


async def _bounded(name: str, step: Awaitable[Any], seconds: float) -> None:
    """Await one shutdown step for up to ``seconds``; log, never raise, when it fails or overruns."""
    try:
        await asyncio.wait_for(step, timeout=seconds)
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %g s; going on", name, seconds)
    except Exception as error:  # noqa: BLE001 - the other steps must still run
        log.warning("shutdown: %s failed (%s: %s); going on", name, type(error).__name__, error)


async def _drained(name: str, task: asyncio.Task[None], until: float, drain: float) -> None:
    """Let ``task`` end by itself until ``until`` (``time.monotonic()``), then cancel it; never raise.

    ``drain`` is the whole allowance in seconds, for the log.
    """
    done, _ = await asyncio.wait({task}, timeout=max(0.0, until - time.monotonic()))
    if not done:
        log.warning("shutdown: %s still busy after the %g s drain; cancelling it", name, drain)
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_STEP_SECONDS)
        return
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.warning("shutdown: %s had failed (%s: %s)", name, type(error).__name__, error)


def _quietly(name: str, step: Callable[[], object]) -> None:
    """Run one quick synchronous shutdown step; log, never raise, when it fails."""
    try:
        step()
    except Exception as error:  # noqa: BLE001 - the other steps must still run
        log.warning("shutdown: %s failed (%s: %s); going on", name, type(error).__name__, error)


async def _in_thread(call: Callable[[], R]) -> R:
    return await asyncio.to_thread(call)


def _some(ids: Sequence[str], shown: int = 10) -> str:
    # A log line names the first few IDs, and how many more there are.
    more = len(ids) - shown
    return ", ".join(ids[:shown]) + (f" and {more} more" if more > 0 else "")


class MonitorApp:
    """The monitor service: consumer + alert store and delivery + metrics + scheduler.

    Args:
        settings: the frozen settings.
        metrics_registry: the Prometheus registry to export (a fresh one by default).

    Attributes:
        metrics_registry: the Prometheus registry ``/metrics`` serves.
        vip_registry: the VIP registry (clients, cards, managers), reloaded when its files change.
    """

    def __init__(self, settings: Settings, *, metrics_registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics_registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
        self.metrics = PipelineMetrics(self.metrics_registry)
        alerting = settings.alerting
        self.codes = ResponseCodeTable.load(alerting.response_codes_path or rules_path("response_codes.yaml"))
        # rules/alerting.yaml is read once; each concern validates its own section of it.
        policy_file = read_policy_file(alerting.policy_path or rules_path("alerting.yaml"))
        self.policy = AlertPolicy.from_rules(policy_file)
        self.escalation = EscalationPolicy.from_rules(policy_file)
        self.lifecycle_metrics = AlertLifecycleMetrics(
            self.metrics_registry, escalation_severities=self.escalation.severities,
            escalation_steps=len(self.escalation.steps))
        self.storm_metrics = StormMetrics(self.metrics_registry)
        self.incident_rules = IncidentRules.from_rules(policy_file)
        self.incidents = IncidentDetector(self.incident_rules) if self.incident_rules else None
        self.rate_limit = RateLimit.from_rules(policy_file)
        api = settings.api
        self.links = (AckLinks(api.link_secret.get_secret_value(),
                               api.public_url or f"http://{api.host}:{api.port}",
                               max_age_seconds=api.link_max_age_seconds)
                      if api.link_secret else None)
        self.vip_registry = RegistryLoader(settings.registry.customers_path, settings.registry.managers_path)
        self.store = AlertStore(alerting.store_location(), postgres=alerting.postgres)
        # The managers' workspace under /workspace of the API (None: workspace.enabled is false).
        self.workspace = configured_workspace(settings, self.store,
                                              managers=lambda: self.vip_registry.current.managers)
        self.channels = build_channels(settings)
        # Event time across the partitions: late events and the watermark (monitor/pipeline/watermark.py).
        self.clock = EventClock(allowed_lateness_seconds=settings.event_time.allowed_lateness_seconds,
                                stalled_partition_seconds=settings.event_time.stalled_partition_seconds)
        self.health = TerminalHealthService(settings.health, settings.kafka,
                                            registry=self.metrics_registry, metrics=self.metrics,
                                            clock=self.clock)
        if self.workspace is not None:  # operations' terminals page: live state, repair priority
            self.workspace.terminal_health = self.health.book.state_of
            self.workspace.impact_classes = tuple(self.health.book.rules.aggregate.classes)
        # Repair priority: the terminals that hurt VIP clients most, their own failure
        # classes being the fleet aggregation's (rules/health.yaml aggregate.classes).
        self.impact_metrics = TerminalImpactMetrics(self.metrics_registry,
                                                    self.health.book.rules.aggregate.classes)
        # Several instances in one group (alerting.scale_out): fleet-scope incidents are
        # judged over every partition from the shared PostgreSQL store (monitor/pipeline/fleet.py).
        self.fleet = self._fleet(settings) if self.incidents is not None else None
        self.processor = BatchProcessor(codes=self.codes, policy=self.policy,
                                        registry=self.vip_registry, metrics=self.metrics,
                                        observers=self.health.observers,
                                        incidents=self.fleet if self.fleet is not None else self.incidents,
                                        clock=self.clock)
        # The recovery watch (docs/recovery.md): did the VIP complete it afterwards?
        self.recovery = self._recovery_watch(settings)
        self.consumer = TransactionConsumer(settings.kafka, processor=self.processor,
                                            record_failures=self._record, metrics=self.metrics,
                                            recovery=self.recovery)
        self.delivery_metrics = DeliveryMetrics(self.metrics_registry)
        self._enabled_channels = tuple(kind for kind in MANAGER_CHANNEL_KINDS if kind in self.channels)
        self.worker = DeliveryWorker(
            self.store, self.channels,
            retry_for=alerting.retry_for_seconds,
            backoff_initial=alerting.backoff_initial_seconds,
            backoff_max=alerting.backoff_max_seconds,
            poll_interval=alerting.poll_interval_seconds,
            default_timezone=alerting.default_timezone,
            on_result=self.metrics.alert_delivery,
            managers=lambda manager_id: self.vip_registry.current.manager(manager_id),
            fallback=build_fallback(alerting),
            fallback_after=alerting.fallback_after_seconds,
            backup_to_registry="backup_manager" in alerting.fallback,
            manager_channels=self._enabled_channels,
            links=self.links,
        )
        self.store_summary = 0  # alerts in the store when run() ended
        self.incident_summary = 0  # top-level incidents in the store when run() ended
        self._sinks = tuple(name for name in settings.alerting.sinks if name in self.channels)
        self._fleet_task: asyncio.Task[None] | None = None

    def _fleet(self, settings: Settings) -> FleetIncidents | None:
        scale_out = settings.alerting.scale_out
        if not scale_out.enabled or self.incidents is None:
            return None
        location = settings.alerting.store_location()
        assert isinstance(location, str)  # the settings refuse scale-out without store_url
        kafka = settings.kafka
        return FleetIncidents(
            self.incidents, FleetCounts(location, kafka.topic, settings.alerting.postgres), self.clock,
            owner=f"{kafka.client_id}-{uuid.uuid4().hex[:12]}",
            record=lambda changes, fence: self._record([], changes, fence=fence),
            open_incidents=lambda: self.store.list_incidents(open_only=True, limit=500),
            completed=lambda: self.consumer.batches, partitions=self._partition_count,
            lateness_seconds=settings.event_time.allowed_lateness_seconds,
            stalled_seconds=settings.event_time.stalled_partition_seconds,
            lease_seconds=scale_out.lease_seconds, interval_seconds=scale_out.interval_seconds,
            metrics=ScaleOutMetrics(self.metrics_registry))

    def _recovery_watch(self, settings: Settings) -> RecoveryWatch | None:
        if not settings.alerting.recovery_window_seconds:
            return None
        event_time = settings.event_time
        watermark: Callable[[], datetime | None] = lambda: self.clock.watermark  # noqa: E731
        if self.fleet is not None:  # every partition of the topic, from the shared progress rows
            def watermark() -> datetime | None:
                return self.store.fleet_watermark(
                    settings.kafka.topic, lateness_seconds=event_time.allowed_lateness_seconds,
                    stalled_seconds=event_time.stalled_partition_seconds)
        return RecoveryWatch(self.store, watermark=watermark,
                             lateness_seconds=event_time.allowed_lateness_seconds,
                             metrics=RecoveryMetrics(self.metrics_registry))

    def _partition_count(self) -> int:
        # The topic's partitions as the consumer's metadata knows them (0: not yet).
        client = getattr(self.consumer, "_consumer", None)
        found = client.partitions_for_topic(self.settings.kafka.topic) if client is not None else None
        return len(found) if found else 0

    async def _record(self, failures: Sequence[VipFailure],
                      incidents: Sequence[IncidentChange] = (),
                      fence: Callable[[Database], object] | None = None) -> None:
        result = await asyncio.to_thread(
            self.store.record, failures,
            window_seconds=self.policy.grouping_window_seconds,
            sinks=self._sinks, channels=self._enabled_channels,
            managers=self.vip_registry.current.managers,  # an away manager's alerts go to the backup
            incidents=incidents, incident_rules=self.incident_rules, rate_limit=self.rate_limit,
            stale_after_seconds=self.settings.alerting.stale_after_seconds, fence=fence,
            recovery_window_seconds=self.settings.alerting.recovery_window_seconds,
        )
        self.delivery_metrics.observe_record(len(result.late_alert_ids), len(result.unroutable_alert_ids))
        if result.unroutable_alert_ids:
            log.warning("%d new alert(s) no configured channel can route to their manager "
                        "(their history says why): %s", len(result.unroutable_alert_ids),
                        _some(result.unroutable_alert_ids))
        if result.late_alert_ids:
            log.info("%d new alert(s) recorded late (failures older than %g s when processed); "
                     "nobody paged: %s", len(result.late_alert_ids),
                     self.settings.alerting.stale_after_seconds, _some(result.late_alert_ids))
        if result.deliveries_enqueued:
            self.worker.wake()

    async def _send_digests(self) -> None:
        # Claimed in the store first (unique per manager and local day): exactly once,
        # however many instances run this job.
        claimed = await asyncio.to_thread(digests_due, self.store, datetime.now(UTC),
                                          self.vip_registry.current.managers, channels=self._enabled_channels)
        if any(d.alert_count for d in claimed):
            self.worker.wake()

    async def _send_summaries(self) -> None:
        # Claimed in the store (one summary per manager and first capped alert): safe
        # to run on every instance.
        if self.rate_limit is None:
            return
        claimed = await asyncio.to_thread(summaries_due, self.store, datetime.now(UTC), self.rate_limit,
                                          self.vip_registry.current.managers, channels=self._enabled_channels)
        if claimed:
            self.worker.wake()

    async def _queue_follow_ups(self) -> None:
        # Once per decided recovery watch, settled in the store: safe on every instance.
        queued = await asyncio.to_thread(
            self.store.queue_recovery_follow_ups, datetime.now(UTC),
            managers=self.vip_registry.current.managers, channels=self._enabled_channels,
            sinks=self._sinks)
        if queued:
            self.worker.wake()

    def _report_registry(self) -> None:
        snapshot = self.vip_registry.current
        unknown = sorted(set(snapshot.customers.get_column("tier").unique().to_list())
                         - set(self.policy.tiers))
        if unknown:
            log.warning("VIP registry has tier(s) %s that rules/alerting.yaml does not list; "
                        "they alert as its default_tier", ", ".join(map(str, unknown)))
        self.metrics.observe_registry_reload(len(snapshot), datetime.fromtimestamp(snapshot.loaded_at, UTC))
        self._report_unreachable()

    def _report_unreachable(self) -> None:
        # At start and after each registry reload: the managers the configured channels
        # cannot reach (by ID: no address is logged), so nobody learns it from silence.
        missed = unreachable_managers(self.vip_registry.current.managers.values(), self._enabled_channels)
        self.delivery_metrics.set_unreachable(len(missed))
        if missed:
            log.warning(
                "%d manager(s) cannot be reached with the configured channels (%s): %s; their "
                "alerts at those severities are stored and counted as unroutable but reach "
                "nobody until a channel is configured (e.g. alerting.smtp.host for e-mail) or "
                "the registry gives them one", len(missed), ", ".join(self._enabled_channels),
                "; ".join(f"{manager_id} ({', '.join(severities)})"
                          for manager_id, severities in sorted(missed.items())))

    async def _escalate(self) -> None:
        # A coroutine: AsyncIOScheduler runs it on the loop, so waking the worker is safe.
        taken = await asyncio.to_thread(escalate_due, self.store, datetime.now(UTC), self.escalation,
                                        self.vip_registry.current.managers, channels=self._enabled_channels)
        if any(e.deliveries_enqueued for e in taken):
            self.worker.wake()

    def _report_outbox(self) -> None:
        # Runs on a scheduler thread: the outbox backlog, and the acknowledgements,
        # escalations and resolutions the store's history gained (API, link, CLI, other
        # instances alike), with the alerts by state.
        self.metrics.set_alerts_pending(self.store.pending_count())
        self.delivery_metrics.set_failed(self.store.failed_deliveries())
        self.lifecycle_metrics.refresh(self.store)
        self.storm_metrics.refresh(self.store)  # incidents, notices, folded and capped alerts

    def _purge_sign_ins(self) -> None:
        # Runs on a scheduler thread; every instance may run it (a DELETE of expired rows).
        purged = self.store.purge_expired_sign_ins(now=datetime.now(UTC))
        if purged:
            log.info("workspace: purged %d expired sign-in link(s) and session(s)", purged)

    def _decide_recoveries(self) -> None:
        # Runs on a scheduler thread; the watch takes turns with the consumer on its lock.
        assert self.recovery is not None
        self.recovery.decide()

    def _reload_registry(self) -> None:
        if self.vip_registry.reload_if_changed():
            self._report_registry()

    def schedule(self, scheduler: BaseScheduler) -> None:
        """Add every scheduled job to ``scheduler``, timed by the job table (:data:`monitor.jobs.JOBS`).

        Jobs that use the alert store are guarded: an unavailable store is a log line,
        and the job runs again at its next interval.
        """
        guard = jobs.StoreJobGuard()
        self.health.count_job_runs(scheduler)
        runners: dict[str, Callable[[], Any]] = {
            jobs.REGISTRY_RELOAD_JOB: self._reload_registry,
            jobs.STORE_GAUGES_JOB: guard.sync("outbox gauge", self._report_outbox),
            jobs.TERMINAL_IMPACT_JOB: guard.sync(
                "terminal impact", lambda: self.impact_metrics.refresh(self.store, datetime.now(UTC))),
            jobs.DIGESTS_JOB: guard.coroutine("daily digests", self._send_digests),
            jobs.SUMMARIES_JOB: guard.coroutine("rate-cap summaries", self._send_summaries),
            **({jobs.RECOVERY_FOLLOW_UPS_JOB: guard.coroutine("recovery follow-ups",
                                                              self._queue_follow_ups)}
               if self.recovery is not None else {}),
            jobs.ESCALATION_JOB: guard.coroutine("escalation", self._escalate),
            **({jobs.RECOVERY_JOB: guard.sync("recovery watch", self._decide_recoveries)}
               if self.recovery is not None else {}),
            **({jobs.WORKSPACE_PURGE_JOB: guard.sync("workspace purge", self._purge_sign_ins)}
               if self.workspace is not None else {}),
            # They run on the health thread, after the batches handed to it before them
            # (monitor/health/worker.py): no lock, so processing never waits for an evaluation.
            **self.health.jobs(),
        }
        jobs.schedule(scheduler, runners, jobs.Timing(settings=self.settings, silent=self.health.detector.rules))

    async def run(self, stop: asyncio.Event, *, create_topics: bool = True) -> None:
        """Run until ``stop`` is set, then shut everything down cleanly.

        Raises:
            monitor.pipeline.vips.RegistryError: the VIP registry files are invalid at start.
            aiokafka.errors.KafkaError: the broker cannot be reached at start.
        """
        self.vip_registry.load()
        self.health.load()
        if self.incidents is not None:  # outages still open when the last run stopped
            self.incidents.restore(await asyncio.to_thread(self.store.list_incidents, open_only=True,
                                                           limit=500))
        self._report_registry()
        server = serve(self.metrics_registry, self.settings.metrics.host, self.settings.metrics.port)
        scheduler = AsyncIOScheduler(timezone="UTC")
        self.schedule(scheduler)
        scheduler.start()
        api_server: ApiServer | None = None
        worker_task: asyncio.Task[None] | None = None
        status_task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        # PostgreSQL: outbox rows committed by any instance wake this worker (LISTEN/NOTIFY).
        listener = self.store.outbox_listener(lambda: loop.call_soon_threadsafe(self.worker.wake))
        try:
            if create_topics:
                await ensure_topics(self.settings.kafka)
            api = self.settings.api
            if api.enabled:
                api_server = await start_api(
                    build_api(self.store, api_token=api.token.get_secret_value() if api.token else None,
                              links=self.links, workspace=self.workspace,
                              impact_classes=self.health.book.rules.aggregate.classes),
                    api.host, api.port)
            await self.consumer.start()
            await self.health.start(create_topics=create_topics)
            status_task = asyncio.create_task(self.health.run(stop), name="cardmon-device-status")
            kafka = self.settings.kafka
            log.info("cardmon running: Kafka %s, topic %s, group %s, dead letters to %s; "
                     "%d VIP clients of %d managers; alert store %s; channels %s; metrics at %s; "
                     "alert API at %s",
                     kafka.bootstrap_servers, kafka.topic, kafka.group_id, kafka.dead_letter_topic,
                     len(self.vip_registry.current), len(self.vip_registry.current.managers), self.store.location,
                     ", ".join(sorted(self.channels)), server.url,
                     api_server.url if api_server is not None else "off")
            if listener is not None:
                listener.start()
            worker_task = asyncio.create_task(self.worker.run(stop), name="cardmon-delivery")
            if self.fleet is not None:
                self._fleet_task = asyncio.create_task(self.fleet.run(stop), name="cardmon-fleet-incidents")
            await self.consumer.run(stop)
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.stop)
            await self._shutdown(stop, scheduler, server, api_server, worker_task, status_task)

    async def _shutdown(self, stop: asyncio.Event, scheduler: AsyncIOScheduler, server: Any,
                        api_server: ApiServer | None, worker_task: asyncio.Task[None] | None,
                        status_task: asyncio.Task[None] | None) -> None:
        """Stop everything in the order of the module docstring; each step bounded, none skipped."""
        stop.set()
        drain = self.settings.alerting.shutdown_drain_seconds
        drain_until = time.monotonic() + drain
        log.info("cardmon stopping: in-flight sends get up to %g s", drain)
        await _bounded("the Kafka consumer", self.consumer.stop(), _STOP_STEP_SECONDS)
        if status_task is not None:
            await _drained("the device-status consumer", status_task,
                           time.monotonic() + _STOP_STEP_SECONDS, _STOP_STEP_SECONDS)
        await _bounded("terminal health", self.health.stop(), _STOP_STEP_SECONDS)
        if self.fleet is not None:
            if self._fleet_task is not None:
                await _drained("the fleet incident judge", self._fleet_task,
                               time.monotonic() + _STOP_STEP_SECONDS, _STOP_STEP_SECONDS)
            await _bounded("the shared incident counts", _in_thread(self.fleet.counts.close), _STOP_STEP_SECONDS)
        if worker_task is not None:
            await _drained("the delivery worker", worker_task, drain_until, drain)
        _quietly("the scheduler", lambda: scheduler.shutdown(wait=False))  # on the loop: it owns a timer
        _quietly("the metrics server", server.close)
        if api_server is not None:
            await _bounded("the alert API", api_server.close(), _STOP_STEP_SECONDS)
        await _bounded("the store summary", self._summarise(), _STOP_STEP_SECONDS)
        await _bounded("the alert store", _in_thread(self.store.close), _STOP_STEP_SECONDS)
        log.info("cardmon stopped")

    async def _summarise(self) -> None:
        self.store_summary = len(await asyncio.to_thread(self.store.list_alerts))
        self.incident_summary = len(await asyncio.to_thread(
            self.store.list_incidents, top_level=True, limit=500))
