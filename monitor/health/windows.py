"""Per-terminal sliding windows over event time: volume, failures, latency, chip reads.

Each window (``rules/health.yaml``, section ``windows``; default ``5m`` in 1-minute
buckets and ``1h`` in 5-minute buckets) keeps, per terminal and per bucket of event
time (``occurred_at``), counts only — never raw values:

* ``transactions`` and one count per failure outcome class (:data:`FAILURE_CLASSES`);
* authorization latency as counts per latency bucket (``latency_buckets_seconds``),
  so percentiles are *estimates*, interpolated inside the bucket as Prometheus'
  ``histogram_quantile`` does (a value in the ``+Inf`` bucket reads as the highest
  finite bound);
* chip reads, card-class failures on chip reads and fallbacks (entry mode ``fallback``:
  a chip card read by its stripe after the chip failed), the card-reader signal.

A window of length ``L`` in buckets of ``b`` ends at ``end`` and holds the bucket
containing ``end`` plus the ``L/b - 1`` before it: it spans between ``L - b`` and ``L``,
so an event leaves a window at most ``L`` after it happened. Storage is one polars
frame per window (:class:`monitor.health.window_counts.WindowCounts`: merged from
per-batch aggregates, pruned of the buckets a window ending at the watermark can no
longer reach, counts as UInt16 while they fit).

Per terminal (one row each, updated per batch; :mod:`monitor.health.terminal_rows`):
the latest event time, the run of consecutive technical failures at the end of its
event stream, whether it has ever read a chip, and the latest non-null
``merchant_id``, ``region``, ``branch_id`` and ``channel`` it reported, in the order
its events are read (its Kafka partition's order, the same whatever the batches).

Late events land in their own bucket of each window that still reaches it (a window
ending at the watermark); events older than the longest window of the watermark are
counted in :attr:`TerminalWindows.late_dropped`.
Event times later than the wall clock are capped to it, so a terminal with a fast
clock cannot push the watermark into the future.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.domain import OUTCOMES
from monitor.errors import ConfigurationError
from monitor.frames import collect
from monitor.health.latency import (
    DEFAULT_LATENCY_BUCKETS,
    QUANTILES,
    latency_bucket,
    latency_columns,
    quantile,
)
from monitor.health.terminal_rows import (
    ATTRIBUTES,
    TECHNICAL_CLASSES,
    TERMINAL_ROW_SCHEMA,
    fold_terminal_rows,
)
from monitor.health.window_counts import WindowCounts
from monitor.rulebook import RuleFile

__all__ = [
    "FAILURE_CLASSES",
    "TerminalWindows",
    "WindowRules",
    "WindowSpec",
]

#: Outcome classes that are failures (everything but ``approved``).
FAILURE_CLASSES: Final[tuple[str, ...]] = tuple(o for o in OUTCOMES if o != "approved")
_US: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a naive datetime has no place past the decoder; pass an aware one")
    return (at - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSpec:
    """One sliding window: its name (a column prefix and metric label), length and bucket.

    Raises:
        ValueError: a length or bucket is not a positive whole number of seconds, the
            length is not a multiple of the bucket, or the name is not a short identifier.
    """

    name: str
    length_seconds: int
    bucket_seconds: int

    def __post_init__(self) -> None:
        if not self.name.isidentifier() and not self.name.isalnum():
            raise ConfigurationError(f"window name {self.name!r} must be alphanumeric (e.g. '5m')")
        for key in ("length_seconds", "bucket_seconds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"window {self.name}: {key} must be a positive integer, not {value!r}")
        if self.length_seconds % self.bucket_seconds:
            raise ConfigurationError(f"window {self.name}: length_seconds must be a multiple of bucket_seconds")

    @property
    def buckets(self) -> int:
        """How many buckets the window spans."""
        return self.length_seconds // self.bucket_seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowRules:
    """The ``windows`` section of ``rules/health.yaml``."""

    spans: tuple[WindowSpec, ...] = (
        WindowSpec(name="5m", length_seconds=300, bucket_seconds=60),
        WindowSpec(name="1h", length_seconds=3600, bucket_seconds=300),
    )
    latency_buckets_seconds: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS

    def __post_init__(self) -> None:
        if not self.spans or len({s.name for s in self.spans}) != len(self.spans):
            raise ConfigurationError("windows: at least one window, names unique")
        bounds = self.latency_buckets_seconds
        if (not bounds or any(b >= c for b, c in itertools.pairwise(bounds))
                or not all(math.isfinite(b) and b > 0 for b in bounds)):
            raise ConfigurationError(f"windows: latency_buckets_seconds must be finite, positive, increasing: {bounds}")

    def span(self, name: str) -> WindowSpec:
        """The window called ``name``.

        Raises:
            KeyError: no such window.
        """
        for spec in self.spans:
            if spec.name == name:
                return spec
        raise KeyError(f"no window {name!r} (have {', '.join(s.name for s in self.spans)})")

    @classmethod
    def from_mapping(cls, section: dict[str, Any]) -> WindowRules:
        """Build from the parsed ``windows`` section.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        unknown = sorted(set(section) - {"spans", "latency_buckets_seconds"})
        if unknown:
            raise ConfigurationError(f"unknown key(s) in 'windows': {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        if "spans" in section:
            try:
                kwargs["spans"] = tuple(WindowSpec(**spec) for spec in section["spans"])
            except TypeError as error:
                raise ConfigurationError(f"windows.spans: {error}") from error
        if "latency_buckets_seconds" in section:
            kwargs["latency_buckets_seconds"] = tuple(float(b) for b in section["latency_buckets_seconds"])
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> WindowRules:
        """Read the ``windows`` section of a health rules file (defaults when absent).

        Raises:
            ValueError: the file is unreadable or the section is invalid.
        """
        return cls.from_rules(RuleFile.read(path, error=ConfigurationError, what="health rules"))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> WindowRules:
        """The ``windows`` section of the health rules file, read once at start (defaults when absent).

        Raises:
            ValueError: the section is invalid.
        """
        section, path = rules.section("windows"), rules.path
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ConfigurationError(f"{path}: 'windows' must be a mapping")
        try:
            return cls.from_mapping(section)
        except ValueError as error:
            raise ConfigurationError(f"{path}: {error}") from error


class TerminalWindows:
    """Sliding-window statistics of every terminal, fed once per batch.

    Args:
        rules: the windows and latency buckets.

    Not thread-safe: call :meth:`observe` and :meth:`stats` from one thread (the
    :class:`~monitor.health.state.HealthBook` publishes immutable snapshots for scrapes).
    """

    def __init__(self, rules: WindowRules | None = None) -> None:
        self.rules = rules or WindowRules()
        bounds = self.rules.latency_buckets_seconds
        self._lat = latency_columns(bounds)
        self._counts: tuple[str, ...] = (
            "transactions", *FAILURE_CLASSES, "chip_reads", "chip_card_failures", "swipes", *self._lat,
        )
        # Per-batch aggregates; a window frame stores the counts as UInt16 when they fit.
        # Bucket indexes since the epoch fit Int32 until 2106 for buckets of 2 s or more.
        bucket = pl.Int32 if min(s.bucket_seconds for s in self.rules.spans) >= 2 else pl.Int64
        schema = {"terminal_id": pl.String, "bucket": bucket, **dict.fromkeys(self._counts, pl.UInt32)}
        self._schema = schema
        self._stores = {s.name: WindowCounts(bucket_seconds=s.bucket_seconds, buckets=s.buckets,
                                             schema=schema, counts=self._counts)
                        for s in self.rules.spans}
        self._longest_us = max(s.length_seconds for s in self.rules.spans) * _US
        # One row per terminal (monitor.health.terminal_rows).
        self._terminals = pl.DataFrame(schema=TERMINAL_ROW_SCHEMA)
        #: Latest event time observed (µs since the epoch, capped at the wall clock), or None.
        self.watermark_us: int | None = None
        #: Events dropped because they were older than every kept bucket.
        self.late_dropped = 0

    def __len__(self) -> int:
        """Number of terminals known."""
        return self._terminals.height

    @property
    def watermark(self) -> datetime | None:
        """The latest event time observed (capped at the wall clock when observed), or None."""
        if self.watermark_us is None:
            return None
        return _EPOCH + timedelta(microseconds=self.watermark_us)

    @property
    def terminals(self) -> pl.DataFrame:
        """``terminal_id, last_us, run, chip_seen`` and the :data:`ATTRIBUTES`, one row per terminal."""
        return self._terminals

    def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
        """Add one classified batch.

        Args:
            frame: ``terminal_id``, ``occurred_at`` (Datetime UTC), ``outcome``, ``latency_ms``
                (milliseconds, nullable), ``entry_mode`` (nullable) and the :data:`ATTRIBUTES`
                columns (missing ones count as null). Other columns are ignored.
            now: the wall clock (default: now); later event times are capped to it.
        """
        if frame.height == 0:
            return
        cap = _micros(now or datetime.now(UTC))
        names = frame.columns
        seconds = pl.col("latency_ms") / 1000.0
        bounds = self.rules.latency_buckets_seconds
        lat_index = latency_bucket(seconds, bounds)
        events = collect(frame.lazy().select(
            pl.col("terminal_id").cast(pl.String),
            pl.col("occurred_at").dt.epoch("us").clip(upper_bound=cap).alias("t"),
            pl.col("outcome").cast(pl.String),
            pl.when(pl.col("latency_ms").is_not_nan()).then(lat_index).alias("lat")
            if "latency_ms" in names else pl.lit(None, dtype=pl.UInt32).alias("lat"),
            (pl.col("entry_mode").cast(pl.String) if "entry_mode" in names
             else pl.lit(None, dtype=pl.String)).alias("entry_mode"),
            *[(pl.col(a).cast(pl.String) if a in names else pl.lit(None, dtype=pl.String)).alias(a)
              for a in ATTRIBUTES],
        ))  # in memory, as the batch path (monitor.frames)
        batch_max = events.get_column("t").max()
        assert isinstance(batch_max, int)
        watermark = max(batch_max, self.watermark_us or batch_max)
        oldest = watermark - self._longest_us
        kept = events.filter(pl.col("t") >= oldest)
        self.late_dropped += events.height - kept.height
        self.watermark_us = watermark
        self._terminals = fold_terminal_rows(self._terminals, events)
        if kept.height == 0:
            return
        chip = pl.col("entry_mode") == "chip"
        counts = [
            pl.len().cast(pl.UInt32).alias("transactions"),
            *[(pl.col("outcome") == c).sum().cast(pl.UInt32).alias(c) for c in FAILURE_CLASSES],
            chip.sum().cast(pl.UInt32).alias("chip_reads"),
            (chip & (pl.col("outcome") == "card")).sum().cast(pl.UInt32).alias("chip_card_failures"),
            (pl.col("entry_mode") == "fallback").sum().cast(pl.UInt32).alias("swipes"),
            *[(pl.col("lat") == i).sum().cast(pl.UInt32).alias(name) for i, name in enumerate(self._lat)],
        ]
        bucket = self._schema["bucket"]
        for store in self._stores.values():
            width = store.bucket_seconds * _US
            agg = collect(kept.lazy().filter(pl.col("t") // width >= store.first_bucket(watermark))
                          .group_by("terminal_id", (pl.col("t") // width).cast(bucket).alias("bucket"))
                          .agg(counts).select(list(self._schema)))
            store.add(agg, watermark)

    def bucket_rows(self) -> dict[str, int]:
        """``{window name: (terminal, bucket) rows held}`` after merging pending batches."""
        for store in self._stores.values():
            store.compact(self.watermark_us)
        return {name: store.frame.height for name, store in self._stores.items()}

    def forget(self, terminal_ids: set[str]) -> None:
        """Drop every trace of these terminals (decommissioned, retention passed)."""
        if not terminal_ids:
            return
        gone = pl.DataFrame({"terminal_id": sorted(terminal_ids)}, schema={"terminal_id": pl.String})
        for store in self._stores.values():
            store.forget(gone, self.watermark_us)
        self._terminals = self._terminals.join(gone, on="terminal_id", how="anti", maintain_order="left")

    def estimated_size(self) -> int:
        """Bytes held by the window frames and the terminal table (polars' estimate)."""
        return int(self._terminals.estimated_size()
                   + sum(s.estimated_size() for s in self._stores.values()))

    def stats(self, end: datetime | None = None) -> pl.DataFrame:
        """Statistics of every known terminal for every window ending at ``end``.

        Args:
            end: where the windows end (aware); default: the watermark (event time).

        Returns:
            One row per known terminal: ``terminal_id``, ``last_transaction_at`` (Datetime
            UTC), ``consecutive_technical``, ``chip_seen``, the :data:`ATTRIBUTES`, then per
            window ``w`` (``5m_…``, ``1h_…``): ``w_transactions``; ``w_<class>`` per failure
            class; ``w_failures`` (all classes); ``w_technical_ratio`` ((technical +
            terminal) / transactions) and ``w_failure_ratio`` (all failure classes /
            transactions), null without traffic; ``w_latency_p50_seconds``, ``_p95_``,
            ``_p99_`` (bucket estimates, null without latencies); ``w_chip_reads``,
            ``w_swipe_fallbacks`` (``entry_mode == "fallback"``: chip cards read by their
            stripe after a failed chip read), ``w_swipe_fallback_ratio`` (fallbacks / (chip reads + fallbacks)) and
            ``w_chip_card_failure_ratio`` (card-class failures on chip reads / chip reads).
        """
        end_us = _micros(end) if end is not None else self.watermark_us
        result = self._terminals.select(
            "terminal_id",
            pl.col("last_us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("last_transaction_at"),
            pl.col("run").alias("consecutive_technical"), "chip_seen", *ATTRIBUTES,
        )
        for spec in self.rules.spans:
            store = self._stores[spec.name]
            store.compact(self.watermark_us)
            p = f"{spec.name}_"
            if end_us is None:
                window = store.frame.clear()
            else:
                last = end_us // (spec.bucket_seconds * _US)
                window = store.frame.filter(pl.col("bucket").is_between(last - spec.buckets + 1, last))
            sums = window.group_by("terminal_id").agg(
                [pl.col(c).cast(pl.UInt32).sum().alias(p + c) for c in self._counts])
            result = result.join(sums, on="terminal_id", how="left", maintain_order="left").with_columns(
                pl.col([p + c for c in self._counts]).fill_null(0))
            volume = pl.col(p + "transactions")
            per = pl.when(volume > 0)
            # A fallback is its own entry mode (ISO 8583 field 22: 80); an ordinary
            # magnetic-stripe card swiped at a chip terminal is not one.
            fallbacks = pl.col(p + "swipes")
            result = result.with_columns(
                pl.sum_horizontal([pl.col(p + c) for c in FAILURE_CLASSES]).alias(p + "failures"),
                per.then(pl.sum_horizontal([pl.col(p + c) for c in TECHNICAL_CLASSES]) / volume)
                .alias(p + "technical_ratio"),
                per.then(pl.sum_horizontal([pl.col(p + c) for c in FAILURE_CLASSES]) / volume)
                .alias(p + "failure_ratio"),
                *[quantile(q, self.rules.latency_buckets_seconds, p).alias(f"{p}latency_{name}_seconds")
                  for name, q in QUANTILES],
                fallbacks.cast(pl.UInt32).alias(p + "swipe_fallbacks"),
                pl.when(pl.col(p + "chip_reads") + fallbacks > 0)
                .then(fallbacks / (pl.col(p + "chip_reads") + fallbacks)).alias(p + "swipe_fallback_ratio"),
                pl.when(pl.col(p + "chip_reads") > 0)
                .then(pl.col(p + "chip_card_failures") / pl.col(p + "chip_reads"))
                .alias(p + "chip_card_failure_ratio"),
            ).drop([p + c for c in self._lat] + [p + "swipes", p + "chip_card_failures"])
        return result
