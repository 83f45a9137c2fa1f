"""Every metric the pipeline exports, registered on one ``CollectorRegistry``.

Label policy: labels hold only bounded, non-personal values — transaction
channel, outcome class, tier, delivery channel and status, rejection reason,
the name of a sanitised contract field and the kind of change, Kafka topic and
partition, build version, and the terminal ID (ISO 8583 field 41, acquirer
equipment). Customer ID, card reference, PAN (masked or not),
merchant ID and response code never appear as labels; the response code is
never crossed with the terminal ID.

All units are base units: seconds, Unix time in seconds, counts of events or
messages.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

import polars as pl
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from monitor._version import __version__
from monitor.domain import CHANNELS, OUTCOMES
from monitor.frames import collect_all
from monitor.metrics._collectors import (
    LATENCY_BUCKETS_SECONDS,
    LatencyHistogramCollector,
    TerminalCollector,
)
from monitor.metrics._consumer import ConsumerFaultMetrics
from monitor.pipeline.contract import DESCRIPTIVE_FIELDS, DESCRIPTIVE_LIST_FIELDS

__all__ = [
    "ALERT_DELIVERY_BUCKETS_SECONDS",
    "BATCH_DURATION_BUCKETS_SECONDS",
    "BATCH_SIZE_BUCKETS",
    "REJECTION_REASONS",
    "SANITISED_CHANGES",
    "SANITISED_FIELDS",
    "PipelineMetrics",
]

#: Micro-batches are expected to take milliseconds; past 10 s the consumer risks
#: missing ``max.poll.interval.ms`` and this histogram is there to show it.
BATCH_DURATION_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Powers of four from a single message up to 16384 (above any ``max_records`` we configure).
BATCH_SIZE_BUCKETS: Final[tuple[float, ...]] = tuple(float(2**n) for n in range(0, 15, 2))
#: Delivery takes a local SMTP hand-off (milliseconds) up to retried webhooks (minutes).
ALERT_DELIVERY_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)
#: Rejection reasons of :class:`monitor.pipeline.decoder.Rejection`, exposed at zero from the start.
REJECTION_REASONS: Final[tuple[str, ...]] = (
    "invalid_utf8", "invalid_json", "not_an_object", "missing_field", "invalid_field",
    "naive_timestamp", "unknown_currency", "response_code_required", "pan_in_card_ref",
    "pan_in_field", "raw_pan", "processing_error", "store_rejected",
)

#: Contract fields the decoder cleans (label ``field`` of the sanitised counter): names
#: from the contract, never a value, so the label set is bounded.
SANITISED_FIELDS: Final[tuple[str, ...]] = DESCRIPTIVE_FIELDS + DESCRIPTIVE_LIST_FIELDS
#: ``text``: control, invisible or white-space characters cleaned; ``pan``: a PAN masked.
SANITISED_CHANGES: Final[tuple[str, ...]] = ("text", "pan")
# A VIP client's failed transaction (built once: an expression costs Python time to build).
_VIP_FAILED: Final = pl.col("tier").is_not_null() & (pl.col("outcome") != "approved")


class PipelineMetrics:
    """The cardmon metrics, fed per micro-batch and read by Prometheus scrapes.

    Args:
        registry: where every metric is registered (a fresh one per test).
        version: value of ``cardmon_build_info{version}``; defaults to the package version.
        latency_buckets: upper bounds in seconds of the authorization latency histogram.

    Raises:
        ValueError: if a metric name is already registered on ``registry``, or the
            latency buckets are invalid.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str | None = None,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS,
    ) -> None:
        self._registry = registry
        self._lock = threading.Lock()  # serialises observe_batch across threads
        self.transactions = Counter(
            "cardmon_transactions_total",
            "Transactions processed, by transaction channel and outcome class.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.vip_failures = Counter(
            "cardmon_vip_failures_total",
            "Failed transactions (outcome other than approved) of VIP clients, by tier and "
            "outcome.",
            ["tier", "outcome"],
            registry=registry,
        )
        self.alerts = Counter(
            "cardmon_alerts_total",
            "Alert delivery attempts to relationship managers, by delivery channel and status.",
            ["channel", "status"],
            registry=registry,
        )
        self.alert_delivery_duration = Histogram(
            "cardmon_alert_delivery_duration_seconds",
            "Time in seconds to deliver (or give up delivering) one alert, by delivery channel.",
            ["channel"],
            buckets=ALERT_DELIVERY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.events_consumed = Counter(
            "cardmon_events_consumed_total",
            "Kafka messages consumed from the transaction topic, valid or not.",
            registry=registry,
        )
        self.events_rejected = Counter(
            "cardmon_events_rejected_total",
            "Messages that broke the event contract, by decoder rejection reason.",
            ["reason"],
            registry=registry,
        )
        self.events_late = Counter(
            "cardmon_events_late_total",
            "Valid events read more than the allowed lateness behind their partition or the "
            "watermark: left out of incident detection and terminal health, still alerted.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "cardmon_dead_letters_total",
            "Messages written (PAN-scrubbed) to the dead-letter topic, by rejection reason.",
            ["reason"],
            registry=registry,
        )
        self.fields_sanitised = Counter(
            "cardmon_event_fields_sanitised_total",
            "Valid events whose descriptive field was cleaned (change=text: control, invisible "
            "or white-space characters; change=pan: a PAN form masked), by contract field.",
            ["field", "change"],
            registry=registry,
        )
        self.batch_duration = Histogram(
            "cardmon_batch_duration_seconds",
            "Wall-clock time in seconds to process one micro-batch, decode to commit.",
            buckets=BATCH_DURATION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "cardmon_batch_size_messages",
            "Kafka messages per micro-batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "cardmon_consumer_lag_messages",
            "Messages between the committed offset and the log end offset, per partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_batch = Gauge(
            "cardmon_last_batch_timestamp_seconds",
            "Unix time in seconds at which the last micro-batch finished.",
            registry=registry,
        )
        self.alerts_pending = Gauge(
            "cardmon_alerts_pending",
            "Alerts in the outbox waiting for delivery.",
            registry=registry,
        )
        self.registry_customers = Gauge(
            "cardmon_registry_customers",
            "VIP clients in the loaded client registry.",
            registry=registry,
        )
        self.registry_last_reload = Gauge(
            "cardmon_registry_last_reload_timestamp_seconds",
            "Unix time in seconds of the last successful client registry reload.",
            registry=registry,
        )
        self.build_info = Info(
            "cardmon_build", "cardmon build; the value is always 1.", registry=registry
        )
        self.build_info.info({"version": version or __version__})
        #: Unreadable partitions, retried batch steps, lost dead letters (the consumer's).
        self.faults = ConsumerFaultMetrics(registry, reasons=(*REJECTION_REASONS, "unreadable_batch"))

        self.latency = LatencyHistogramCollector(latency_buckets)
        self.terminals = TerminalCollector()
        registry.register(self.latency)
        registry.register(self.terminals)

        # Known label values start at zero so rate() sees the first increment.
        for channel in CHANNELS:
            for outcome in OUTCOMES:
                self.transactions.labels(channel, outcome)
        for reason in REJECTION_REASONS:
            self.events_rejected.labels(reason)
        for name in SANITISED_FIELDS:
            for change in SANITISED_CHANGES:
                self.fields_sanitised.labels(name, change)

    def observe_batch(self, frame: pl.DataFrame) -> None:
        """Count one micro-batch of decoded, classified events.

        Everything is aggregated with polars ``group_by``; the cost per batch is
        a handful of increments per (channel, outcome) and (tier, outcome) pair,
        not per event or per terminal.

        Args:
            frame: one row per event with at least ``occurred_at`` (Datetime, UTC),
                ``channel``, ``terminal_id``, ``outcome`` (str), ``tier`` (str, null
                when the client is not a VIP) and ``latency_ms`` (Float64 ms, nullable).
                Other columns are ignored.
        """
        if frame.is_empty():
            return
        lazy = frame.lazy()
        # One collect_all for the batch's four aggregates (each eager step is a plan of its own).
        by_outcome, vip_failures, latency, terminals = collect_all([
            lazy.group_by("channel", "outcome").len(),
            lazy.filter(_VIP_FAILED).group_by("tier", "outcome").len(),
            self.latency.aggregate(frame),
            self.terminals.aggregate(frame),
        ])
        with self._lock:
            for channel, outcome, count in by_outcome.iter_rows():
                self.transactions.labels(channel, outcome).inc(count)
            for tier, outcome, count in vip_failures.iter_rows():
                self.vip_failures.labels(tier, outcome).inc(count)
            self.latency.merge(latency)
            self.terminals.merge(terminals)

    def observe_rejections(self, reasons: Mapping[str, int]) -> None:
        """Count messages the decoder rejected.

        Args:
            reasons: count per :attr:`monitor.pipeline.decoder.Rejection.reason`.
        """
        for reason, count in reasons.items():
            if count:
                self.events_rejected.labels(reason).inc(count)

    def observe_sanitised(self, changes: Mapping[tuple[str, str], int]) -> None:
        """Count valid events whose descriptive fields the decoder cleaned.

        Args:
            changes: count of events per ``(field, change)``, as
                :attr:`monitor.pipeline.decoder.DecodedFrame.sanitised` holds them.

        Raises:
            ValueError: a field or change outside :data:`SANITISED_FIELDS` and
                :data:`SANITISED_CHANGES` (labels stay bounded).
        """
        for (name, change), count in changes.items():
            if name not in SANITISED_FIELDS or change not in SANITISED_CHANGES:
                raise ValueError(f"not a sanitised field and change: {name!r}, {change!r}")
            if count:
                self.fields_sanitised.labels(name, change).inc(count)

    def observe_dead_letters(self, reasons: Mapping[str, int]) -> None:
        """Count messages written to the dead-letter topic.

        Args:
            reasons: count per rejection reason (the dead-letter header).
        """
        for reason, count in reasons.items():
            if count:
                self.dead_letters.labels(reason).inc(count)

    def observe_late(self, count: int) -> None:
        """Add ``count`` late events (:class:`monitor.pipeline.watermark.EventClock`)."""
        self.events_late.inc(count)

    def observe_batch_duration(self, seconds: float, size: int) -> None:
        """Record one finished micro-batch.

        Observes its duration and size, adds ``size`` to
        ``cardmon_events_consumed_total`` (the only place that counter moves) and
        sets ``cardmon_last_batch_timestamp_seconds`` to now.

        Args:
            seconds: wall-clock processing time of the batch, in seconds.
            size: Kafka messages in the batch, valid and rejected.

        Raises:
            ValueError: if ``seconds`` or ``size`` is negative.
        """
        if seconds < 0 or size < 0:
            raise ValueError(f"batch duration and size must be >= 0: {seconds}, {size}")
        self.batch_duration.observe(seconds)
        self.batch_size.observe(size)
        self.events_consumed.inc(size)
        self.last_batch.set_to_current_time()

    def alert_delivery(self, channel: str, status: str, seconds: float) -> None:
        """Record one alert delivery attempt.

        Args:
            channel: delivery channel (``email``, ``webhook``...), not the card channel.
            status: result, e.g. ``sent``, ``failed``, ``retry``.
            seconds: time spent on the attempt, in seconds.
        """
        self.alerts.labels(channel, status).inc()
        self.alert_delivery_duration.labels(channel).observe(seconds)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Set the consumer lag of one partition, in messages."""
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def forget_lag(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this consumer no longer owns (rebalance)."""
        try:
            self.consumer_lag.remove(topic, str(partition))
        except KeyError:
            pass

    def set_alerts_pending(self, count: int) -> None:
        """Set the number of alerts waiting in the outbox."""
        self.alerts_pending.set(count)

    def observe_registry_reload(self, customers: int, loaded_at: datetime) -> None:
        """Record a successful client registry reload.

        Args:
            customers: VIP clients now in the registry.
            loaded_at: when the reload finished (timezone-aware).

        Raises:
            ValueError: if ``loaded_at`` is naive.
        """
        if loaded_at.tzinfo is None or loaded_at.utcoffset() is None:
            raise ValueError("loaded_at must be timezone-aware")
        self.registry_customers.set(customers)
        self.registry_last_reload.set(loaded_at.timestamp())
