"""Authorization latency as counts per bucket: the bounds, each event's bucket, percentile estimates.

The sliding windows (:mod:`monitor.health.windows`) keep no latency values, only how
many events fell in each bucket (``lat0`` … ``latN``, the last one the ``+Inf``
bucket). Percentiles are *estimates*, interpolated inside the bucket as Prometheus'
``histogram_quantile`` does (a value in the ``+Inf`` bucket reads as the highest
finite bound).
"""

from __future__ import annotations

import itertools
from typing import Final

import polars as pl

__all__ = ["DEFAULT_LATENCY_BUCKETS", "QUANTILES", "latency_bucket", "latency_columns", "quantile"]

#: Latency bucket upper bounds (seconds), the same as the authorization latency histogram:
#: dense below 1 s (issuers answer in well under a second), sparse up to the 30 s host timeout.
DEFAULT_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)
#: Percentiles reported per window.
QUANTILES: Final[tuple[tuple[str, float], ...]] = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def latency_columns(bounds: tuple[float, ...]) -> list[str]:
    """The count columns of ``bounds``: ``lat0`` … ``lat{len(bounds)}`` (the last one ``+Inf``)."""
    return [f"lat{i}" for i in range(len(bounds) + 1)]  # the last one is the +Inf bucket


def latency_bucket(seconds: pl.Expr, bounds: tuple[float, ...]) -> pl.Expr:
    """The index (UInt32) of the smallest bound with ``seconds <= bound``; ``len(bounds)`` above them all."""
    index = pl.lit(len(bounds), dtype=pl.UInt32)
    for i in reversed(range(len(bounds))):  # smallest bound with latency <= bound (le)
        index = pl.when(seconds <= bounds[i]).then(pl.lit(i, dtype=pl.UInt32)).otherwise(index)
    return index


def quantile(q: float, bounds: tuple[float, ...], prefix: str) -> pl.Expr:
    """``histogram_quantile``-style estimate from per-bucket (non-cumulative) counts."""
    counts = [pl.col(f"{prefix}lat{i}").cast(pl.Float64) for i in range(len(bounds) + 1)]
    cumulative = list(itertools.accumulate(counts, lambda a, b: a + b))
    total = cumulative[-1]
    rank = total * q
    branches = []
    previous: pl.Expr = pl.lit(0.0)
    for i, upper in enumerate(bounds):
        lower = bounds[i - 1] if i else 0.0
        inside = (previous < rank) & (cumulative[i] >= rank)
        value = lower + (upper - lower) * (rank - previous) / (cumulative[i] - previous)
        branches.append(pl.when(inside).then(value))
        previous = cumulative[i]
    branches.append(pl.when(previous < rank).then(pl.lit(bounds[-1])))  # the +Inf bucket
    return pl.when(total > 0).then(pl.coalesce(branches)).otherwise(None)
