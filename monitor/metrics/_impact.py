"""Repair priority in Prometheus: the terminals that hurt VIP clients most, top N per window.

Read from the alert store (:meth:`~monitor.alerts.store.AlertStore.terminal_impact`) by
the ``terminal-impact`` job (:mod:`monitor.jobs`), so every instance on one store
exports the same ranking (aggregate with ``max``). A custom collector renders the last
snapshot at scrape time: a terminal that drops out of the top N loses its series at
once, no stale child lingers.

Families, each with labels ``terminal_id`` and ``window`` (``24h``, ``7d``):

- ``cardmon_terminal_vip_impact_clients``: distinct VIP clients who failed there;
- ``cardmon_terminal_vip_impact_failures``: their failures there;
- ``cardmon_terminal_vip_impact_managers``: relationship managers of those clients.

Bounded: at most :data:`IMPACT_TOP_N` terminals per window, so at most
``3 × 2 × IMPACT_TOP_N`` series. The terminal ID is a device, not a person: no client,
card or manager identifier is a label.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.alerts.store import TerminalImpact

__all__ = ["IMPACT_TOP_N", "IMPACT_WINDOWS", "ImpactSource", "TerminalImpactMetrics"]

#: Terminals exported per window: a repair crew works down a short list.
IMPACT_TOP_N: Final = 10
#: The windows of the ranking (label value → length), the issue's "last 24 hours and 7 days".
IMPACT_WINDOWS: Final[dict[str, timedelta]] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


class ImpactSource(Protocol):
    """What the metrics read from the alert store."""

    def terminal_impact(self, *, since: datetime, until: datetime, classes: Sequence[str],
                        limit: int | None = None) -> list[TerminalImpact]:
        """Terminals ranked by VIP impact in ``[since, until)``."""
        ...


class TerminalImpactMetrics(Collector):
    """The top terminals by VIP impact per window, refreshed from the store, rendered at scrape.

    Args:
        registry: where the collector is registered.
        classes: the outcome classes that are a terminal's own (``rules/health.yaml``
            ``aggregate.classes``).
    """

    def __init__(self, registry: CollectorRegistry, classes: Sequence[str]) -> None:
        self._classes = tuple(classes)
        self._lock = threading.Lock()  # refresh runs on a scheduler thread, collect on the server's
        self._snapshot: dict[str, list[TerminalImpact]] = {}  # <window label: ranked terminals>
        registry.register(self)

    def refresh(self, store: ImpactSource, now: datetime) -> None:
        """Read each window's top terminals ending at ``now`` (aware) from ``store``."""
        snapshot = {label: store.terminal_impact(since=now - length, until=now, classes=self._classes,
                                                 limit=IMPACT_TOP_N)
                    for label, length in IMPACT_WINDOWS.items()}
        with self._lock:
            self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """The three families from the last snapshot (empty before the first refresh)."""
        with self._lock:
            snapshot = self._snapshot
        families = {
            "clients": GaugeMetricFamily(
                "cardmon_terminal_vip_impact_clients",
                "Distinct VIP clients who failed at the terminal in the window (its own failure "
                "classes, issuer and network outages left out); the top terminals only.",
                labels=["terminal_id", "window"]),
            "failures": GaugeMetricFamily(
                "cardmon_terminal_vip_impact_failures",
                "VIP failures at the terminal in the window (its own failure classes); the top "
                "terminals only.", labels=["terminal_id", "window"]),
            "managers": GaugeMetricFamily(
                "cardmon_terminal_vip_impact_managers",
                "Relationship managers whose VIP clients failed at the terminal in the window; "
                "the top terminals only.", labels=["terminal_id", "window"]),
        }
        for window, ranked in snapshot.items():
            for impact in ranked:
                labels = [impact.terminal_id, window]
                families["clients"].add_metric(labels, impact.clients)
                families["failures"].add_metric(labels, impact.failures)
                families["managers"].add_metric(labels, impact.managers)
        yield from families.values()

    def describe(self) -> Iterator[Metric]:
        """No description at registration: the families' samples exist only after a refresh."""
        return iter(())
