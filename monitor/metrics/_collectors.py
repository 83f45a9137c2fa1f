"""Custom collectors fed once per micro-batch from polars aggregates.

Two families would cost one Python object per observation (or per terminal) if
built from ``prometheus_client``'s ``Histogram`` and ``Counter`` children; here
each batch is aggregated with one polars ``group_by`` and the result is merged
into an immutable snapshot. A scrape (which runs on the HTTP server's thread)
reads the snapshot reference once and builds its metric families from it, so it
never sees a half-applied batch. Writers take a lock so two batches observed
from different threads cannot lose each other's counts.

Both classes follow the ``prometheus_client`` ``Collector`` protocol
(``collect()``, plus ``describe()`` so a registry can detect duplicate names).
The per-terminal families are :class:`~monitor.metrics.FrameFamily` objects, which
``/metrics`` renders straight from the snapshot's columns (see ``_exposition``).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import polars as pl
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from monitor.domain import CHANNELS, OUTCOMES
from monitor.metrics._exposition import FrameFamily

__all__ = [
    "FAILURE_OUTCOMES",
    "LATENCY_BUCKETS_SECONDS",
    "TERMINAL_FAILURE_OUTCOMES",
    "LatencyHistogramCollector",
    "TerminalCollector",
]

#: Upper bounds (``le``, seconds) of the authorization latency histogram. Card
#: schemes expect an issuer answer well under a second and time out stand-in at
#: 2–5 s (ATM hosts up to 30 s), so buckets are dense below 1 s and sparse above.
LATENCY_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)
#: Outcome classes that count as a failure (everything but ``approved``).
FAILURE_OUTCOMES: Final[tuple[str, ...]] = tuple(o for o in OUTCOMES if o != "approved")
#: The failure classes that say something about the terminal itself, the only ones with a
#: per-terminal series: a client's funds, PIN or a fraud rule are not the terminal's health,
#: and three classes instead of six keep 100,000 terminals' series bounded.
TERMINAL_FAILURE_OUTCOMES: Final[tuple[str, ...]] = ("technical", "terminal", "card")

# prometheus_client's own ``le`` formatting (``1.0``, ``+Inf``), typed for mypy --strict.
_go_float: Final[Callable[[float], str]] = floatToGoString
#: Batch aggregates that may wait before they are merged into the per-terminal snapshot
#: (a scrape merges them at once): bounded memory, and one pass over every terminal per
#: this many batches instead of one per batch.
_FOLD_BATCHES: Final = 32

_LATENCY_NAME: Final = "cardmon_authorization_latency_seconds"
_LATENCY_HELP: Final = (
    "Authorization latency (request to issuer response) in seconds, per transaction channel; "
    "events without a latency are not observed."
)
_TERMINAL_LAST_NAME: Final = "cardmon_terminal_last_transaction_timestamp_seconds"
_TERMINAL_LAST_HELP: Final = (
    "Unix time in seconds of the latest transaction seen at the terminal (ISO 8583 field 41)."
)
_TERMINAL_TXN_NAME: Final = "cardmon_terminal_transactions"
_TERMINAL_TXN_HELP: Final = "Transactions seen at the terminal, any outcome."
_TERMINAL_FAIL_NAME: Final = "cardmon_terminal_failures"
_TERMINAL_FAIL_HELP: Final = (
    "Failed transactions at the terminal by outcome class (technical, terminal, card: the "
    "classes that are the terminal's own health); "
    "a series appears with the first failure of its class."
)


class LatencyHistogramCollector:
    """``cardmon_authorization_latency_seconds{channel}``, aggregated per batch.

    Every channel of the contract (``ATM``, ``POS``, ``ECOM``) is exposed from the
    start with zero counts, so ``histogram_quantile`` and ``rate`` see the series
    before its first observation.

    Args:
        buckets: strictly increasing finite upper bounds in seconds; ``+Inf`` is added.

    Raises:
        ValueError: if ``buckets`` is empty, not strictly increasing or not finite.
    """

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ValueError(f"latency buckets must be non-empty and increasing: {bounds}")
        if not all(math.isfinite(b) for b in bounds):
            raise ValueError("latency buckets must be finite; +Inf is implicit")
        self._bounds: Final = bounds
        seconds = pl.col("latency_ms") / 1000.0
        # Built once (an expression costs Python time to build, on every batch otherwise).
        self._aggregates: Final = [
            # Prometheus buckets are cumulative and inclusive: le means "<=".
            *[(seconds <= bound).sum().alias(f"le{i}") for i, bound in enumerate(bounds)],
            pl.len().alias("count"),
            seconds.sum().alias("sum"),
        ]
        self._lock = threading.Lock()
        # <channel: (cumulative counts per bound + the +Inf count, sum of seconds)>
        self._snapshot: dict[str, tuple[tuple[int, ...], float]] = {
            channel: ((0,) * (len(bounds) + 1), 0.0) for channel in CHANNELS
        }

    @property
    def buckets(self) -> tuple[float, ...]:
        """The finite bucket upper bounds in seconds (``+Inf`` is implicit)."""
        return self._bounds

    def observe(self, frame: pl.DataFrame) -> None:
        """Add the ``latency_ms`` of one batch to the histogram.

        Args:
            frame: needs ``channel`` (str) and ``latency_ms`` (Float64, milliseconds,
                nullable; null rows are skipped, and so is NaN, which would poison
                the sum for good).
        """
        self.merge(self.aggregate(frame).collect())

    def aggregate(self, frame: pl.DataFrame) -> pl.LazyFrame:
        """The lazy per-channel aggregate of one batch, for :meth:`merge` (see :meth:`observe`).

        Lets a caller collect it together with other aggregates of the same batch
        (``polars.collect_all``): one plan per batch instead of one per metric.
        """
        return frame.lazy().filter(_LATENCY_KNOWN).group_by("channel").agg(self._aggregates)

    def merge(self, aggregated: pl.DataFrame) -> None:
        """Add a collected :meth:`aggregate` to the histogram."""
        if aggregated.is_empty():
            return
        columns = [f"le{i}" for i in range(len(self._bounds))] + ["count"]
        with self._lock:
            snapshot = dict(self._snapshot)
            for row in aggregated.iter_rows(named=True):
                channel = row["channel"]
                old_counts, old_sum = snapshot.get(channel, ((0,) * len(columns), 0.0))
                counts = tuple(old + int(row[c]) for old, c in zip(old_counts, columns))
                snapshot[channel] = (counts, old_sum + float(row["sum"]))
            self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        """Yield the family this collector exposes, without samples."""
        yield HistogramMetricFamily(_LATENCY_NAME, _LATENCY_HELP, labels=["channel"])

    def collect(self) -> Iterator[Metric]:
        """Yield the histogram built from the current snapshot."""
        snapshot = self._snapshot
        family = HistogramMetricFamily(_LATENCY_NAME, _LATENCY_HELP, labels=["channel"])
        bounds = [_go_float(b) for b in self._bounds] + ["+Inf"]
        for channel in sorted(snapshot):
            counts, total = snapshot[channel]
            family.add_metric([channel], list(zip(bounds, map(float, counts))), total)
        yield family


#: The latencies a histogram counts: null ones are skipped, and so is NaN, which would
#: poison the sum for good.
_LATENCY_KNOWN: Final = pl.col("latency_ms").is_not_null() & pl.col("latency_ms").is_not_nan()
#: One batch's per-terminal aggregates (built once: see LatencyHistogramCollector).
_TERMINAL_AGGREGATES: Final = [
    pl.col("occurred_at").max().dt.epoch("us").cast(pl.Int64).alias("last_us"),
    pl.len().cast(pl.Int64).alias("transactions"),
    *[(pl.col("outcome") == outcome).sum().cast(pl.Int64).alias(outcome)
      for outcome in TERMINAL_FAILURE_OUTCOMES],
]


def _empty_terminals() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "terminal_id": pl.String,
            "last_us": pl.Int64,
            "transactions": pl.Int64,
            **{outcome: pl.Int64 for outcome in TERMINAL_FAILURE_OUTCOMES},
        }
    )


class TerminalCollector:
    """Per-terminal series, one row per terminal ID in a polars snapshot.

    Exposes ``cardmon_terminal_last_transaction_timestamp_seconds{terminal_id}``,
    ``cardmon_terminal_transactions_total{terminal_id}`` and
    ``cardmon_terminal_failures_total{terminal_id,outcome}``. Terminal IDs
    identify acquirer equipment, not customers, so they may be labels; nothing
    else per-entity (response code, merchant, card) is ever crossed with them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # One row per terminal: terminal_id, last_us (latest occurred_at, Unix µs),
        # transactions, and one failure count column per TERMINAL_FAILURE_OUTCOMES class.
        self._snapshot: pl.DataFrame = _empty_terminals()
        self._pending: list[pl.DataFrame] = []  # batch aggregates not merged into the snapshot yet
        # (the snapshot the families were built from, its three families)
        self._families: tuple[pl.DataFrame, tuple[FrameFamily, ...]] | None = None

    def observe(self, frame: pl.DataFrame) -> None:
        """Merge one batch into the per-terminal snapshot.

        Args:
            frame: needs ``terminal_id`` (str), ``occurred_at`` (Datetime, UTC) and
                ``outcome`` (str).
        """
        if frame.is_empty():
            return
        self.merge(self.aggregate(frame).collect())

    def aggregate(self, frame: pl.DataFrame) -> pl.LazyFrame:
        """The lazy per-terminal aggregate of one batch, for :meth:`merge` (see :meth:`observe`)."""
        return frame.lazy().group_by("terminal_id").agg(_TERMINAL_AGGREGATES)

    def merge(self, batch: pl.DataFrame) -> None:
        """Merge a collected :meth:`aggregate` into the per-terminal snapshot.

        The batch waits with the others until a scrape or :attr:`terminal_count` reads
        the snapshot, or :data:`_FOLD_BATCHES` wait: the merge costs a pass over every
        terminal, which a batch of a few events need not pay.
        """
        if batch.is_empty():
            return
        with self._lock:
            self._pending.append(batch)
            if len(self._pending) >= _FOLD_BATCHES:
                self._fold()

    def _fold(self) -> pl.DataFrame:
        """The snapshot with the waiting batches merged in (the caller holds the lock)."""
        if self._pending:
            self._snapshot = (
                pl.concat([self._snapshot, *self._pending], how="vertical")
                .group_by("terminal_id")
                .agg(
                    pl.col("last_us").max(),
                    pl.col("transactions").sum(),
                    *[pl.col(outcome).sum() for outcome in TERMINAL_FAILURE_OUTCOMES],
                )
                .sort("terminal_id")
            )
            self._pending = []
        return self._snapshot

    def _current(self) -> pl.DataFrame:
        """The snapshot with every batch observed so far."""
        with self._lock:
            return self._fold()

    @property
    def terminal_count(self) -> int:
        """How many distinct terminal IDs have been seen."""
        return self._current().height

    def describe(self) -> Iterator[Metric]:
        """Yield the families this collector exposes, without samples."""
        yield GaugeMetricFamily(_TERMINAL_LAST_NAME, _TERMINAL_LAST_HELP, labels=["terminal_id"])
        yield CounterMetricFamily(_TERMINAL_TXN_NAME, _TERMINAL_TXN_HELP, labels=["terminal_id"])
        yield CounterMetricFamily(
            _TERMINAL_FAIL_NAME, _TERMINAL_FAIL_HELP, labels=["terminal_id", "outcome"]
        )

    def collect(self) -> Iterator[Metric]:
        """Yield the per-terminal families of the current snapshot.

        They are :class:`~monitor.metrics.FrameFamily` objects, built once per snapshot
        (the snapshot is replaced by every non-empty batch, so its identity is its
        version): ``/metrics`` renders their text from the polars columns, and reading
        their ``samples`` (``get_sample_value``, ``generate_latest``) still works.
        """
        snapshot = self._current()
        cached = self._families
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, _terminal_families(snapshot))
            self._families = cached
        yield from cached[1]


def _terminal_families(snapshot: pl.DataFrame) -> tuple[FrameFamily, ...]:
    last = snapshot.select("terminal_id", value=pl.col("last_us") / 1_000_000)
    transactions = snapshot.select("terminal_id", value=pl.col("transactions"))
    # Sparse: 100k terminals x 6 classes of zeros would dominate the scrape. unpivot
    # stacks the outcome columns in TERMINAL_FAILURE_OUTCOMES order, terminal IDs sorted within.
    failures = snapshot.unpivot(
        on=list(TERMINAL_FAILURE_OUTCOMES), index="terminal_id", variable_name="outcome", value_name="value"
    ).filter(pl.col("value") > 0)
    return (
        FrameFamily(_TERMINAL_LAST_NAME, _TERMINAL_LAST_HELP, "gauge", last, labels=["terminal_id"]),
        FrameFamily(_TERMINAL_TXN_NAME, _TERMINAL_TXN_HELP, "counter", transactions,
                    labels=["terminal_id"]),
        FrameFamily(_TERMINAL_FAIL_NAME, _TERMINAL_FAIL_HELP, "counter", failures,
                    labels=["terminal_id", "outcome"]),
    )
