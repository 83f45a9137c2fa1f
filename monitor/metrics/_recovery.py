"""The recovery watch's metrics: VIP failures recovered or abandoned, and how fast.

``cardmon_vip_recoveries_total{result, outcome, channel}`` counts each decision once,
on the instance that made it (:mod:`monitor.pipeline.recovery`): ``result`` is
``recovered`` or ``abandoned``, ``outcome`` the outcome class of the alert's first
failure, ``channel`` its channel. With several instances, ``sum`` them. The recovery
ratio is ``recovered / (recovered + abandoned)``. ``cardmon_vip_recovery_seconds``
observes, for each recovery, the seconds from the first failure of the kind completed to the
approval (event time).

No label holds an alert, client, card or manager ID.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from monitor.alerts.store.recoveries import Recovery

__all__ = ["RECOVERY_BUCKETS_SECONDS", "RECOVERY_RESULTS", "RecoveryMetrics"]

#: ``result`` label values.
RECOVERY_RESULTS: Final[tuple[str, ...]] = ("recovered", "abandoned")
#: From a retry a minute later to the end of the default 30-minute window (and beyond,
#: when the window is longer or failures kept the watch open).
RECOVERY_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)


class RecoveryMetrics:
    """Recovered and abandoned VIP failures, and the time to recover.

    Args:
        registry: where the metrics are registered.

    Raises:
        ValueError: a metric name is already registered on ``registry``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "cardmon_vip_recoveries",
            "VIP failure alerts whose client completed an approved transaction of the same "
            "channel and type within the recovery window (recovered) or did not (abandoned), "
            "by the outcome class and channel of the alert's first failure.",
            ["result", "outcome", "channel"], registry=registry)
        self.seconds = Histogram(
            "cardmon_vip_recovery_seconds",
            "Seconds from a VIP alert's first failure to the client's approved transaction "
            "of the same kind (event time), per recovery.",
            buckets=RECOVERY_BUCKETS_SECONDS, registry=registry)

    def observe_recovered(self, recoveries: Sequence[Recovery]) -> None:
        """Count the watches this instance moved to ``recovered`` and their times to recover."""
        for recovery in recoveries:
            self.decisions.labels("recovered", recovery.outcome, recovery.channel).inc()
            if recovery.seconds_to_recovery is not None:
                self.seconds.observe(max(recovery.seconds_to_recovery, 0.0))

    def observe_abandoned(self, recoveries: Sequence[Recovery]) -> None:
        """Count the watches this instance moved to ``abandoned``."""
        for recovery in recoveries:
            self.decisions.labels("abandoned", recovery.outcome, recovery.channel).inc()
