"""Prometheus metrics of the cardmon pipeline.

:class:`PipelineMetrics` registers every ``cardmon_*`` metric on a
``CollectorRegistry`` and is fed once per micro-batch; :func:`serve` exposes a
registry over HTTP for Prometheus to scrape. Per-terminal families are
:class:`FrameFamily` objects rendered straight from polars by :class:`Exposition`;
:class:`FrameCollector` plugs another frame-backed family in with one
``registry.register(...)``. :class:`AlertLifecycleMetrics` counts acknowledgements,
escalations and resolutions from the alert store's history; :class:`DeliveryMetrics`
counts late and unroutable alerts, unreachable managers and failed deliveries;
:class:`RecoveryMetrics` counts VIP failures recovered and abandoned.
"""

from monitor.metrics._collectors import (
    FAILURE_OUTCOMES,
    LATENCY_BUCKETS_SECONDS,
    TERMINAL_FAILURE_OUTCOMES,
    LatencyHistogramCollector,
    TerminalCollector,
)
from monitor.metrics._consumer import CONSUMER_STEPS, ConsumerFaultMetrics
from monitor.metrics._delivery import DeliveryMetrics
from monitor.metrics._exposition import Exposition, FrameCollector, FrameFamily, MetricKind
from monitor.metrics._impact import (
    IMPACT_TOP_N,
    IMPACT_WINDOWS,
    ImpactSource,
    TerminalImpactMetrics,
)
from monitor.metrics._lifecycle import (
    ACK_VIAS,
    TIME_TO_ACKNOWLEDGE_BUCKETS_SECONDS,
    AlertLifecycleMetrics,
    LifecycleSource,
)
from monitor.metrics._pipeline import (
    ALERT_DELIVERY_BUCKETS_SECONDS,
    BATCH_DURATION_BUCKETS_SECONDS,
    BATCH_SIZE_BUCKETS,
    REJECTION_REASONS,
    SANITISED_CHANGES,
    SANITISED_FIELDS,
    PipelineMetrics,
)
from monitor.metrics._recovery import RECOVERY_BUCKETS_SECONDS, RECOVERY_RESULTS, RecoveryMetrics
from monitor.metrics._server import MetricsServer, metrics_app, serve
from monitor.metrics._storm import NOTICE_KINDS, ScaleOutMetrics, StormMetrics, StormSource

__all__ = [
    "ACK_VIAS",
    "ALERT_DELIVERY_BUCKETS_SECONDS",
    "BATCH_DURATION_BUCKETS_SECONDS",
    "BATCH_SIZE_BUCKETS",
    "CONSUMER_STEPS",
    "FAILURE_OUTCOMES",
    "IMPACT_TOP_N",
    "IMPACT_WINDOWS",
    "LATENCY_BUCKETS_SECONDS",
    "NOTICE_KINDS",
    "RECOVERY_BUCKETS_SECONDS",
    "RECOVERY_RESULTS",
    "REJECTION_REASONS",
    "SANITISED_CHANGES",
    "SANITISED_FIELDS",
    "TERMINAL_FAILURE_OUTCOMES",
    "TIME_TO_ACKNOWLEDGE_BUCKETS_SECONDS",
    "AlertLifecycleMetrics",
    "ConsumerFaultMetrics",
    "DeliveryMetrics",
    "Exposition",
    "FrameCollector",
    "FrameFamily",
    "ImpactSource",
    "LatencyHistogramCollector",
    "LifecycleSource",
    "MetricKind",
    "MetricsServer",
    "PipelineMetrics",
    "RecoveryMetrics",
    "ScaleOutMetrics",
    "StormMetrics",
    "StormSource",
    "TerminalCollector",
    "TerminalImpactMetrics",
    "metrics_app",
    "serve",
]
