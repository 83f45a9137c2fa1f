"""Alert lifecycle metrics: acknowledgements, escalations, resolutions, states — read from the store.

Acknowledgements arrive through the alert API, the signed link in a message and the
``cardmon alerts ack`` command, which is another process writing the same store; an
escalation step may be taken by another instance. A counter bumped where each of
them happens would miss the ones this process does not see, so the counters are
derived from the store's history instead: every refresh (:meth:`AlertLifecycleMetrics.refresh`,
a scheduled job of the monitor, every 5 s) reads the history rows written since the
previous one, whoever wrote them, and counts each once. The time to acknowledge is
observed from the same rows (acknowledgement time minus the time the alert was
recorded), and the state gauge is a ``GROUP BY`` of the alerts table.

The first refresh of a process counts the whole store, so the counters continue
where the previous process left them instead of dropping to zero on a restart. With
several instances on one store each exports the same counts: aggregate them with
``max``, not ``sum``.

Labels: severity, lifecycle state, acknowledgement channel (``api``, ``link``,
``cli``, ``workspace``, else ``other``), escalation step (1, 2...) and resolution outcome
(the vocabulary of :data:`~monitor.alerts.states.RESOLUTION_OUTCOMES`, ``none``). No alert, client or manager
ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.alerts.states import ALERT_STATES, CONTACT_OUTCOMES, RESOLUTION_OUTCOMES, AlertState
from monitor.alerts.store import LifecycleRecord
from monitor.domain import SEVERITIES

__all__ = [
    "ACK_VIAS",
    "TIME_TO_ACKNOWLEDGE_BUCKETS_SECONDS",
    "AlertLifecycleMetrics",
    "LifecycleSource",
]

#: Channels an acknowledgement comes through; anything else is counted as ``other``.
ACK_VIAS: Final[tuple[str, ...]] = ("api", "link", "cli", "workspace")
#: A manager acknowledges within minutes when all is well; escalation starts at 15 min
#: (rules/alerting.yaml) and a forgotten alert takes hours, so buckets run from 30 s to a day.
TIME_TO_ACKNOWLEDGE_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
)
# History rows read per store query; a refresh reads until it has caught up.
_PAGE: Final = 5_000


class LifecycleSource(Protocol):
    """What the metrics read from the alert store (:class:`monitor.alerts.store.AlertStore`)."""

    def lifecycle_records(
        self, after_history_id: int, limit: int = ...
    ) -> tuple[list[LifecycleRecord], int]:
        """Records after a cursor, and the next cursor."""
        ...

    def state_counts(self) -> Mapping[tuple[AlertState, str], int]:
        """Alerts by (state, severity)."""
        ...


class AlertLifecycleMetrics:
    """The ``cardmon_alerts_acknowledged_total`` family and its siblings, fed from the store.

    Args:
        registry: where the metrics are registered.
        escalation_severities: severities that escalate (``escalation.severities`` of
            rules/alerting.yaml); their step series start at zero.
        escalation_steps: steps of the escalation chain.

    Raises:
        ValueError: a metric name is already registered on ``registry``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        escalation_severities: Sequence[str] = (),
        escalation_steps: int = 0,
    ) -> None:
        self._cursor = 0  # the last alert_history row counted
        self.acknowledged = Counter(
            "cardmon_alerts_acknowledged_total",
            "Alerts acknowledged by a person, by severity and the channel the acknowledgement "
            "came through (api, link, cli, workspace, other); read from the alert store's history.",
            ["severity", "via"], registry=registry,
        )
        self.escalated = Counter(
            "cardmon_alerts_escalated_total",
            "Escalation steps taken for unacknowledged alerts, by severity and step "
            "(1 = the first step of rules/alerting.yaml); read from the alert store's history.",
            ["severity", "step"], registry=registry,
        )
        self.resolved = Counter(
            "cardmon_alerts_resolved_total",
            "Alerts resolved, by severity; read from the alert store's history.",
            ["severity"], registry=registry,
        )
        self.outcomes = Counter(
            "cardmon_alert_resolution_outcomes_total",
            "Alerts resolved, by what the person did (called_client, reversal_or_refund_arranged, "
            "card_replaced, terminal_reported_to_operations, client_unreachable, "
            "no_action_needed; none: a note alone); read from the alert store's history.",
            ["outcome"], registry=registry,
        )
        self.time_to_acknowledge = Histogram(
            "cardmon_alert_time_to_acknowledge_seconds",
            "Seconds from when an alert was recorded to its acknowledgement, by severity.",
            ["severity"], buckets=TIME_TO_ACKNOWLEDGE_BUCKETS_SECONDS, registry=registry,
        )
        self.time_to_first_contact = Histogram(
            "cardmon_alert_time_to_first_contact_seconds",
            "Seconds from when an alert was recorded to its resolution with an outcome that "
            "reached the client (called_client, reversal_or_refund_arranged, card_replaced), "
            "by severity.",
            ["severity"], buckets=TIME_TO_ACKNOWLEDGE_BUCKETS_SECONDS, registry=registry,
        )
        self.stored = Gauge(
            "cardmon_stored_alerts",
            "Alerts in the alert store by lifecycle state (open, notified, acknowledged, "
            "resolved, failed) and severity.",
            ["state", "severity"], registry=registry,
        )
        # Known label values start at zero, so rate() sees the first increment.
        for severity in SEVERITIES:
            for via in ACK_VIAS:
                self.acknowledged.labels(severity, via)
            self.resolved.labels(severity)
            self.time_to_acknowledge.labels(severity)
            self.time_to_first_contact.labels(severity)
            for state in ALERT_STATES:
                self.stored.labels(state, severity)
        for outcome in (*RESOLUTION_OUTCOMES, "none"):
            self.outcomes.labels(outcome)
        for escalating in escalation_severities:
            for step in range(1, escalation_steps + 1):
                self.escalated.labels(escalating, str(step))

    def __repr__(self) -> str:
        return f"AlertLifecycleMetrics(cursor={self._cursor})"

    def observe(self, records: Sequence[LifecycleRecord]) -> None:
        """Count acknowledgements, escalation steps and resolutions (each record once).

        Args:
            records: history records in order; other actions are ignored.
        """
        for record in records:
            if record.action == "acknowledged":
                via = record.via if record.via in ACK_VIAS else "other"
                self.acknowledged.labels(record.severity, via).inc()
                seconds = (record.at - record.opened_at).total_seconds()
                self.time_to_acknowledge.labels(record.severity).observe(max(seconds, 0.0))
            elif record.action == "escalated":
                self.escalated.labels(record.severity, str(record.step)).inc()
            elif record.action == "resolved":
                self.resolved.labels(record.severity).inc()
                outcome = record.outcome if record.outcome in RESOLUTION_OUTCOMES else "none"
                self.outcomes.labels(outcome).inc()
                if outcome in CONTACT_OUTCOMES:
                    seconds = (record.at - record.opened_at).total_seconds()
                    self.time_to_first_contact.labels(record.severity).observe(max(seconds, 0.0))

    def set_states(self, counts: Mapping[tuple[AlertState, str], int]) -> None:
        """Set the state gauge; a (state, severity) pair absent from ``counts`` is 0."""
        for state in ALERT_STATES:
            for severity in SEVERITIES:
                self.stored.labels(state, severity).set(counts.get((state, severity), 0))

    def refresh(self, store: LifecycleSource) -> int:
        """Count what the store's history gained since the last refresh, and set the states.

        Synchronous (SQLite): call it from a thread or a scheduler job.

        Args:
            store: the alert store.

        Returns:
            Records counted by this call.
        """
        counted = 0
        while True:
            records, cursor = store.lifecycle_records(self._cursor, _PAGE)
            self.observe(records)
            counted += len(records)
            done = cursor == self._cursor or len(records) < _PAGE
            self._cursor = cursor
            if done:
                break
        self.set_states(store.state_counts())
        return counted
