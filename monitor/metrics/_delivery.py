"""Delivery health metrics: late and unroutable alerts, unreachable managers, failed deliveries.

``cardmon_alerts_late_total`` and ``cardmon_alerts_unroutable_total`` count what this
process recorded (from :class:`monitor.alerts.store.RecordResult`); with several
instances, ``sum`` them. ``cardmon_managers_unreachable`` is set from the registry
each time it is loaded; ``cardmon_alert_deliveries_failed`` is read from the store
every refresh (the monitor's 5 s job), whoever failed the rows, so aggregate it
with ``max``.

No label holds an alert, client or manager ID: the log line and the API name them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["DeliveryMetrics"]


class DeliveryMetrics:
    """The families that say whether alerts reach people, and which do not.

    Args:
        registry: where the metrics are registered.

    Raises:
        ValueError: a metric name is already registered on ``registry``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.late = Counter(
            "cardmon_alerts_late_total",
            "VIP alerts recorded late (the failure was older than alerting.stale_after_seconds "
            "when processed): stored and in the digest, nobody paged.", registry=registry)
        self.unroutable = Counter(
            "cardmon_alerts_unroutable_total",
            "VIP alerts whose manager no configured channel reaches at the alert's severity.",
            registry=registry)
        self.unreachable = Gauge(
            "cardmon_managers_unreachable",
            "Managers in the registry that no configured channel reaches at some severity "
            "they want messages at.", registry=registry)
        self.failed = Gauge(
            "cardmon_alert_deliveries_failed",
            "Outbox rows (alerts, notices, summaries, digests) that failed for good and were "
            "not re-sent yet: `cardmon alerts list --state failed`, `cardmon alerts resend`.",
            registry=registry)

    def observe_record(self, late: int, unroutable: int) -> None:
        """Count the late and unroutable alerts one ``record`` call created."""
        if late:
            self.late.inc(late)
        if unroutable:
            self.unroutable.inc(unroutable)

    def set_unreachable(self, managers: int) -> None:
        """Set how many registry managers no configured channel reaches."""
        self.unreachable.set(managers)

    def set_failed(self, deliveries: int) -> None:
        """Set how many outbox rows are failed (not re-sent)."""
        self.failed.set(deliveries)
