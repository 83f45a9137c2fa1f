"""Prometheus metrics of the cardmon pipeline.

:class:`PipelineMetrics` registers every ``cardmon_*`` metric on a
``CollectorRegistry`` and is fed once per micro-batch; :func:`serve` exposes a
registry over HTTP for Prometheus to scrape. Per-terminal families are
:class:`FrameFamily` objects rendered straight from polars by :class:`Exposition`;
:class:`FrameCollector` plugs another frame-backed family in with one
``registry.register(...)``.
"""

from monitor.metrics._collectors import (
    FAILURE_OUTCOMES,
    LATENCY_BUCKETS_SECONDS,
    TERMINAL_FAILURE_OUTCOMES,
    LatencyHistogramCollector,
    TerminalCollector,
)
from monitor.metrics._exposition import Exposition, FrameCollector, FrameFamily, MetricKind
from monitor.metrics._pipeline import (
    ALERT_DELIVERY_BUCKETS_SECONDS,
    BATCH_DURATION_BUCKETS_SECONDS,
    BATCH_SIZE_BUCKETS,
    REJECTION_REASONS,
    PipelineMetrics,
)
from monitor.metrics._server import MetricsServer, metrics_app, serve

__all__ = [
    "ALERT_DELIVERY_BUCKETS_SECONDS",
    "BATCH_DURATION_BUCKETS_SECONDS",
    "BATCH_SIZE_BUCKETS",
    "FAILURE_OUTCOMES",
    "LATENCY_BUCKETS_SECONDS",
    "REJECTION_REASONS",
    "Exposition",
    "FrameCollector",
    "FrameFamily",
    "LatencyHistogramCollector",
    "MetricKind",
    "MetricsServer",
    "PipelineMetrics",
    "TERMINAL_FAILURE_OUTCOMES",
    "TerminalCollector",
    "metrics_app",
    "serve",
]
