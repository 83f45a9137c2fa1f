"""Storm-control and rate-cap metrics: incidents, notices, folded and capped alerts — read from the store.

Like the lifecycle metrics (:mod:`monitor.metrics._lifecycle`), these are derived
from the alert store every refresh (the monitor's 5 s job), so what another instance
recorded counts too; with several instances on one store, aggregate with ``max``.
Counters follow the store's totals (they only grow: rows are never deleted), so a
restarted monitor continues where the store is.

Labels: incident ``scope`` (network, issuer, region, merchant, terminal) and notice
``kind`` (opened, update, resolved, escalated). No incident, alert, client or
manager ID, and no terminal ID either: those are in the API.
"""

from __future__ import annotations

from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.alerts.store import StormCounts
from monitor.incidents.rules import SCOPES

__all__ = ["NOTICE_KINDS", "ScaleOutMetrics", "StormMetrics", "StormSource"]

#: Kinds of incident notice (``monitor.incidents.model.NoticeKind``).
NOTICE_KINDS: Final[tuple[str, ...]] = ("opened", "update", "resolved", "escalated")


class StormSource(Protocol):
    """What the metrics read from the alert store."""

    def storm_counts(self) -> StormCounts:
        """The store's storm-control totals."""
        ...


class StormMetrics:
    """``cardmon_incidents_opened_total`` and its siblings, fed from the store.

    Args:
        registry: where the metrics are registered.

    Raises:
        ValueError: a metric name is already registered on ``registry``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.opened = Counter(
            "cardmon_incidents_opened_total",
            "Incidents (outages of one terminal, merchant, region, issuer or the network) "
            "storm control opened, by scope.", ["scope"], registry=registry)
        self.open = Gauge("cardmon_incidents_open", "Incidents not ended yet, by scope.",
                          ["scope"], registry=registry)
        self.flapping = Counter(
            "cardmon_incidents_flapping_total",
            "Incidents marked flapping (failed again after recovering, repeatedly), by scope.",
            ["scope"], registry=registry)
        self.notices = Counter(
            "cardmon_incident_notices_sent_total",
            "Incident notices the channels accepted (one message per manager per incident, "
            "its updates, all-clears and escalations), by kind; one per channel.",
            ["kind"], registry=registry)
        self.linked = Counter("cardmon_alerts_in_incidents_total",
                              "VIP alerts linked to an incident.", registry=registry)
        self.merged = Counter(
            "cardmon_alerts_merged_total",
            "VIP alerts whose own message was folded into an incident notice (messages saved).",
            registry=registry)
        self.capped = Counter(
            "cardmon_alerts_rate_capped_total",
            "VIP alerts held by the per-manager rate cap (sent later in one summary).",
            registry=registry)
        self.summaries = Counter("cardmon_alert_summaries_total",
                                 "Rate-cap summaries claimed (one per manager and spell).",
                                 registry=registry)
        for scope in SCOPES:  # known label values start at zero, so rate() sees the first one
            self.opened.labels(scope)
            self.open.labels(scope)
            self.flapping.labels(scope)
        for kind in NOTICE_KINDS:
            self.notices.labels(kind)
        self._seen: dict[tuple[str, str], float] = {}  # <(metric, label): total already counted>

    def __repr__(self) -> str:
        return f"StormMetrics(seen={len(self._seen)})"

    def _follow(self, name: str, label: str, counter: Counter, total: int) -> None:
        # Counters follow the store's (growing) totals by increments.
        delta = total - self._seen.get((name, label), 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[(name, label)] = total

    def set(self, counts: StormCounts) -> None:
        """Bring every metric to the store's totals."""
        for scope in SCOPES:
            self._follow("opened", scope, self.opened.labels(scope), counts.incidents_opened.get(scope, 0))
            self._follow("flapping", scope, self.flapping.labels(scope),
                         counts.incidents_flapping.get(scope, 0))
            self.open.labels(scope).set(counts.incidents_open.get(scope, 0))
        for kind in NOTICE_KINDS:
            self._follow("notices", kind, self.notices.labels(kind), counts.notices_sent.get(kind, 0))
        self._follow("linked", "", self.linked, counts.alerts_linked)
        self._follow("merged", "", self.merged, counts.alerts_merged)
        self._follow("capped", "", self.capped, counts.alerts_capped)
        self._follow("summaries", "", self.summaries, counts.summaries)

    def refresh(self, store: StormSource) -> None:
        """Read the store's totals and set the metrics (synchronous: a scheduler job)."""
        self.set(store.storm_counts())


class ScaleOutMetrics:
    """The scale-out judge's health (``alerting.scale_out``): who judges, how far, failed rounds.

    Fed by :class:`monitor.pipeline.fleet.FleetIncidents` of this instance (any thread).
    With several instances, ``max(cardmon_scale_out_judged_through_timestamp_seconds)``
    is how far fleet-scope incidents are judged, and ``sum(cardmon_scale_out_judge)``
    should be 1: 0 for longer than a lease means no instance judges.

    Args:
        registry: where the metrics are registered.

    Raises:
        ValueError: a metric name is already registered on ``registry``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.judge = Gauge(
            "cardmon_scale_out_judge",
            "1 while this instance holds the incident judge's lease (alerting.scale_out), else 0.",
            registry=registry)
        self.judged_through = Gauge(
            "cardmon_scale_out_judged_through_timestamp_seconds",
            "End of the last bucket this instance judged and stored as the fleet's incident judge "
            "(event time, seconds since the epoch; 0: it has not judged).",
            registry=registry)
        self.rounds_failed = Counter(
            "cardmon_scale_out_rounds_failed_total",
            "Scale-out rounds (writing partial counts, judging) that failed and are tried again "
            "with backoff.", registry=registry)

    def set_judging(self, judging: bool) -> None:
        """Whether this instance holds the judge's lease now."""
        self.judge.set(1 if judging else 0)

    def observe_judged_through(self, end_seconds: float) -> None:
        """The judged buckets were stored up to ``end_seconds`` (event time, epoch seconds)."""
        self.judged_through.set(end_seconds)

    def observe_round_failed(self) -> None:
        """One round failed (it is tried again)."""
        self.rounds_failed.inc()
