"""Wire the monitor together from :class:`~monitor.config.Settings` and run it.

``MonitorApp`` owns the long-running parts: the transaction consumer, the
delivery worker, terminal health (device-status consumer, silent detection, state
evaluation), the ``/metrics`` server and the scheduler (registry reloads, health
jobs). ``run`` starts them, waits for a stop signal, and stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from monitor.alerts.alertmanager import AlertmanagerChannel
from monitor.alerts.apprise_channel import AppriseChannel
from monitor.alerts.channels import (
    Channel,
    ConsoleChannel,
    EmailChannel,
    JsonLinesChannel,
    WebhookChannel,
)
from monitor.alerts.delivery import DeliveryWorker
from monitor.alerts.digest import digests_due
from monitor.alerts.lifecycle import EscalationPolicy, escalate_due
from monitor.alerts.model import VipFailure
from monitor.alerts.ratelimit import RateLimit, summaries_due
from monitor.alerts.routing import MANAGER_CHANNEL_KINDS
from monitor.alerts.store import AlertStore
from monitor.alerts.tokens import AckLinks
from monitor.api import ApiServer, build_api, start_api
from monitor.classify import ResponseCodeTable
from monitor.config import AlertingSettings, Settings
from monitor.consumer import TransactionConsumer, ensure_topics
from monitor.health.service import TerminalHealthService
from monitor.incidents import IncidentChange, IncidentDetector, IncidentRules
from monitor.metrics import AlertLifecycleMetrics, PipelineMetrics, StormMetrics, serve
from monitor.paths import rules_path
from monitor.pipeline import BatchProcessor
from monitor.policy import AlertPolicy
from monitor.registry import RegistryLoader
from monitor.watermark import EventClock

__all__ = ["MonitorApp", "build_channels", "build_fallback"]

log = logging.getLogger(__name__)


def _email(alerting: AlertingSettings, recipient: str | None = None) -> EmailChannel:
    smtp = alerting.smtp
    assert smtp.host is not None
    return EmailChannel(
        host=smtp.host, port=smtp.port, username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        sender=smtp.from_address, start_tls=smtp.starttls, use_tls=smtp.use_tls,
        timeout=smtp.timeout_seconds, recipient=recipient,
    )


def build_channels(settings: Settings) -> dict[str, Any]:
    """The delivery channels the settings enable, by name.

    ``email`` needs ``alerting.smtp.host``; ``webhook`` (each manager's own URL, signed
    when ``alerting.webhook_signing_secret`` is set) and ``apprise`` (each manager's chat
    or SMS URLs from the registry) are always available; ``console``, ``jsonl`` and
    ``alertmanager`` are sinks every alert goes to when listed in ``alerting.sinks``.
    """
    alerting = settings.alerting
    secret = alerting.webhook_signing_secret
    channels: dict[str, Any] = {
        "webhook": WebhookChannel(timeout=alerting.webhook_timeout_seconds,
                                  signing_secret=secret.get_secret_value() if secret else None),
        "apprise": AppriseChannel(timeout=alerting.apprise_timeout_seconds),
    }
    if alerting.smtp.host:
        channels["email"] = _email(alerting)
    if "console" in alerting.sinks:
        channels["console"] = ConsoleChannel()
    if "jsonl" in alerting.sinks:
        channels["jsonl"] = JsonLinesChannel(alerting.jsonl_path)
    if "alertmanager" in alerting.sinks and alerting.alertmanager_url:
        channels["alertmanager"] = AlertmanagerChannel(
            alerting.alertmanager_url, timeout=alerting.webhook_timeout_seconds,
            generator_url=alerting.alertmanager_generator_url,
            hold_seconds=alerting.alertmanager_hold_seconds)
    return channels


def build_fallback(alerting: AlertingSettings) -> Channel | None:
    """The channel an alert goes to after the last failed attempt, or ``None``."""
    match alerting.fallback:
        case "email":
            return _email(alerting, recipient=alerting.fallback_email)
        case "apprise":
            assert alerting.fallback_apprise_url is not None
            return AppriseChannel([alerting.fallback_apprise_url.get_secret_value()],
                                  timeout=alerting.apprise_timeout_seconds)
        case "jsonl":
            return JsonLinesChannel(alerting.fallback_jsonl_path)
        case "console":
            return ConsoleChannel()
    return None


class MonitorApp:
    """The monitor service: consumer + alert store and delivery + metrics + scheduler.

    Args:
        settings: the frozen settings.
        registry: the Prometheus registry to export (a fresh one by default).
    """

    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        alerting = settings.alerting
        self.codes = ResponseCodeTable.load(alerting.response_codes_path or rules_path("response_codes.yaml"))
        self.policy = AlertPolicy.load(alerting.policy_path or rules_path("alerting.yaml"))
        self.escalation = EscalationPolicy.load(alerting.policy_path or rules_path("alerting.yaml"))
        self.lifecycle_metrics = AlertLifecycleMetrics(
            self.registry, escalation_severities=self.escalation.severities,
            escalation_steps=len(self.escalation.steps))
        self.storm_metrics = StormMetrics(self.registry)
        self.incident_rules = IncidentRules.load(alerting.policy_path or rules_path("alerting.yaml"))
        self.incidents = IncidentDetector(self.incident_rules) if self.incident_rules else None
        self.rate_limit = RateLimit.load(alerting.policy_path or rules_path("alerting.yaml"))
        api = settings.api
        self.links = (AckLinks(api.link_secret.get_secret_value(),
                               api.public_url or f"http://{api.host}:{api.port}",
                               max_age_seconds=api.link_max_age_seconds)
                      if api.link_secret else None)
        self.vip = RegistryLoader(settings.registry.customers_path, settings.registry.managers_path)
        self.store = AlertStore(alerting.store_location())
        self.channels = build_channels(settings)
        # Event time across the partitions: late events and the watermark (monitor/watermark.py).
        self.clock = EventClock(allowed_lateness_seconds=settings.event_time.allowed_lateness_seconds,
                                stalled_partition_seconds=settings.event_time.stalled_partition_seconds)
        self.health = TerminalHealthService(settings.health, settings.kafka,
                                            registry=self.registry, metrics=self.metrics,
                                            clock=self.clock)
        self.processor = BatchProcessor(codes=self.codes, policy=self.policy,
                                        registry=self.vip, metrics=self.metrics,
                                        observers=self.health.observers, incidents=self.incidents,
                                        clock=self.clock)
        self.consumer = TransactionConsumer(settings.kafka, processor=self.processor,
                                            record_failures=self._record, metrics=self.metrics)
        self.worker = DeliveryWorker(
            self.store, self.channels,
            max_attempts=alerting.max_attempts,
            backoff_initial=alerting.backoff_initial_seconds,
            backoff_max=alerting.backoff_max_seconds,
            poll_interval=alerting.poll_interval_seconds,
            default_timezone=alerting.default_timezone,
            on_result=self.metrics.alert_delivery,
            managers=lambda manager_id: self.vip.current.manager(manager_id),
            fallback=build_fallback(alerting),
            links=self.links,
        )
        self._enabled_channels = tuple(kind for kind in MANAGER_CHANNEL_KINDS if kind in self.channels)
        self.store_summary = 0  # alerts in the store when run() ended
        self.incident_summary = 0  # top-level incidents in the store when run() ended
        self._sinks = tuple(name for name in settings.alerting.sinks if name in self.channels)

    async def _record(self, failures: Sequence[VipFailure],
                      incidents: Sequence[IncidentChange] = ()) -> None:
        result = await asyncio.to_thread(
            self.store.record, failures,
            window_seconds=self.policy.grouping_window_seconds,
            sinks=self._sinks, channels=self._enabled_channels,
            managers=self.vip.current.managers,  # an away manager's alerts go to the backup
            incidents=incidents, incident_rules=self.incident_rules, rate_limit=self.rate_limit,
        )
        if result.deliveries_enqueued:
            self.worker.wake()

    async def _send_digests(self) -> None:
        # Claimed in the store first (unique per manager and local day): exactly once,
        # however many instances run this job.
        claimed = await asyncio.to_thread(digests_due, self.store, datetime.now(UTC),
                                          self.vip.current.managers, channels=self._enabled_channels)
        if any(d.alert_count for d in claimed):
            self.worker.wake()

    async def _send_summaries(self) -> None:
        # Claimed in the store (one summary per manager and first capped alert): safe
        # to run on every instance.
        if self.rate_limit is None:
            return
        claimed = await asyncio.to_thread(summaries_due, self.store, datetime.now(UTC), self.rate_limit,
                                          self.vip.current.managers, channels=self._enabled_channels)
        if claimed:
            self.worker.wake()

    def _report_registry(self) -> None:
        snapshot = self.vip.current
        unknown = sorted(set(snapshot.customers.get_column("tier").unique().to_list())
                         - set(self.policy.tiers))
        if unknown:
            log.warning("VIP registry has tier(s) %s that rules/alerting.yaml does not list; "
                        "they alert as its default_tier", ", ".join(map(str, unknown)))
        self.metrics.observe_registry_reload(len(snapshot), datetime.fromtimestamp(snapshot.loaded_at, UTC))

    async def _escalate(self) -> None:
        # A coroutine: AsyncIOScheduler runs it on the loop, so waking the worker is safe.
        taken = await asyncio.to_thread(escalate_due, self.store, datetime.now(UTC), self.escalation,
                                        self.vip.current.managers, channels=self._enabled_channels)
        if any(e.deliveries_enqueued for e in taken):
            self.worker.wake()

    def _report_outbox(self) -> None:
        # Runs on a scheduler thread: the outbox backlog, and the acknowledgements,
        # escalations and resolutions the store's history gained (API, link, CLI, other
        # instances alike), with the alerts by state.
        self.metrics.set_alerts_pending(self.store.pending_count())
        self.lifecycle_metrics.refresh(self.store)
        self.storm_metrics.refresh(self.store)  # incidents, notices, folded and capped alerts

    def _reload_registry(self) -> None:
        if self.vip.reload_if_changed():
            self._report_registry()

    async def run(self, stop: asyncio.Event, *, create_topics: bool = True) -> None:
        """Run until ``stop`` is set, then shut everything down cleanly.

        Raises:
            monitor.registry.RegistryError: the VIP registry files are invalid at start.
            aiokafka.errors.KafkaError: the broker cannot be reached at start.
        """
        self.vip.load()
        self.health.load()
        if self.incidents is not None:  # outages still open when the last run stopped
            self.incidents.restore(await asyncio.to_thread(self.store.list_incidents, open_only=True,
                                                           limit=500))
        self._report_registry()
        server = serve(self.registry, self.settings.metrics.host, self.settings.metrics.port)
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(self._reload_registry, "interval",
                          seconds=self.settings.registry.reload_interval_seconds,
                          id="registry-reload", max_instances=1, coalesce=True)
        scheduler.add_job(self._report_outbox, "interval", seconds=5, id="outbox-gauge",
                          max_instances=1, coalesce=True)
        scheduler.add_job(self._send_digests, "cron", minute="*", second=0,
                          id="alert-digests", max_instances=1, coalesce=True)
        scheduler.add_job(self._send_summaries, "interval", seconds=30, id="alert-summaries",
                          max_instances=1, coalesce=True)
        scheduler.add_job(self._escalate, "interval",
                          seconds=self.settings.alerting.escalation_interval_seconds,
                          id="alert-escalation", max_instances=1, coalesce=True)
        self.health.schedule(scheduler)
        scheduler.start()
        api_server: ApiServer | None = None
        worker_task: asyncio.Task[None] | None = None
        status_task: asyncio.Task[None] | None = None
        try:
            if create_topics:
                await ensure_topics(self.settings.kafka)
            api = self.settings.api
            if api.enabled:
                api_server = await start_api(
                    build_api(self.store, api_token=api.token.get_secret_value() if api.token else None,
                              links=self.links),
                    api.host, api.port)
            await self.consumer.start()
            await self.health.start(create_topics=create_topics)
            status_task = asyncio.create_task(self.health.run(stop), name="cardmon-device-status")
            kafka = self.settings.kafka
            log.info("cardmon running: Kafka %s, topic %s, group %s, dead letters to %s; "
                     "%d VIP clients of %d managers; alert store %s; channels %s; metrics at %s; "
                     "alert API at %s",
                     kafka.bootstrap_servers, kafka.topic, kafka.group_id, kafka.dead_letter_topic,
                     len(self.vip.current), len(self.vip.current.managers), self.store.location,
                     ", ".join(sorted(self.channels)), server.url,
                     api_server.url if api_server is not None else "off")
            worker_task = asyncio.create_task(self.worker.run(stop), name="cardmon-delivery")
            await self.consumer.run(stop)
        finally:
            stop.set()
            await self.consumer.stop()
            if status_task is not None:
                with suppress(asyncio.CancelledError):
                    await asyncio.wait_for(status_task, timeout=10)
            await self.health.stop()
            if worker_task is not None:
                with suppress(asyncio.CancelledError):
                    await asyncio.wait_for(worker_task, timeout=10)
            scheduler.shutdown(wait=False)
            server.close()
            if api_server is not None:
                await api_server.close()
            self.store_summary = len(self.store.list_alerts())
            self.incident_summary = len(self.store.list_incidents(top_level=True, limit=500))
            self.store.close()
