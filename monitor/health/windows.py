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
frame per window (``terminal_id``, ``bucket`` — the bucket's index since the epoch,
Int32 for buckets of 2 s or more — and the counts), merged from per-batch aggregates once they hold
:data:`_MAX_PENDING_ROWS` rows and pruned of the buckets a window ending at the
watermark can no longer reach. Counts are stored as UInt16 (half the memory of a
fleet's window frames) while every (terminal, bucket) count fits, i.e. no terminal made
more than 65,535 transactions in one bucket (218 per second in a 5-minute bucket); a
window whose frame holds a larger count keeps UInt32 counts, exact, until that bucket is
pruned. Sums over a window are UInt32 either way.

Per terminal (one row each, updated per batch): the latest event time, the run of
consecutive technical failures at the end of its event stream (outcome ``technical``
or ``terminal``; any other outcome resets it), whether it has ever read a chip, and
the latest non-null ``merchant_id``, ``region``, ``branch_id`` and ``channel`` it
reported. "Latest" and "end" are in the order the terminal's events are read: its
Kafka partition's order (the key is the terminal ID), the same whatever the batches.

Late events land in their own bucket of each window that still reaches it (a window
ending at the watermark); events older than the longest window of the watermark are
counted in :attr:`TerminalWindows.late_dropped`.
Event times later than the wall clock are capped to it, so a terminal with a fast
clock cannot push the watermark into the future.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.domain import OUTCOMES
from monitor.rulebook import RuleFile

__all__ = [
    "ATTRIBUTES",
    "FAILURE_CLASSES",
    "TECHNICAL_CLASSES",
    "TerminalWindows",
    "WindowRules",
    "WindowSpec",
]

#: Outcome classes that are failures (everything but ``approved``).
FAILURE_CLASSES: Final[tuple[str, ...]] = tuple(o for o in OUTCOMES if o != "approved")
#: Outcome classes of the consecutive-failure run and of ``technical_ratio``: the host,
#: switch, issuer or the terminal itself failed (not the card or the customer).
TECHNICAL_CLASSES: Final[tuple[str, ...]] = ("technical", "terminal")
#: Event columns kept per terminal (latest non-null value) for aggregation.
ATTRIBUTES: Final[tuple[str, ...]] = ("channel", "merchant_id", "region", "branch_id")
#: Latency bucket upper bounds (seconds), the same as the authorization latency histogram:
#: dense below 1 s (issuers answer in well under a second), sparse up to the 30 s host timeout.
DEFAULT_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)
#: Percentiles reported per window.
QUANTILES: Final[tuple[tuple[str, float], ...]] = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
#: Batch aggregates are merged into a window frame once they hold this many rows (or at
#: :meth:`TerminalWindows.stats`): rare enough to keep merges cheap, small enough that
#: a merge of 100,000 terminals does not double the memory (≈ 110 bytes per pending row).
_MAX_PENDING_ROWS: Final = 200_000
#: Largest per-bucket count stored as UInt16; every count of a row is at most its
#: ``transactions``, so that column decides.
_NARROW_MAX: Final = 65_535
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
            raise ValueError(f"window name {self.name!r} must be alphanumeric (e.g. '5m')")
        for key in ("length_seconds", "bucket_seconds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"window {self.name}: {key} must be a positive integer, not {value!r}")
        if self.length_seconds % self.bucket_seconds:
            raise ValueError(f"window {self.name}: length_seconds must be a multiple of bucket_seconds")

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
            raise ValueError("windows: at least one window, names unique")
        bounds = self.latency_buckets_seconds
        if (not bounds or any(b >= c for b, c in itertools.pairwise(bounds))
                or not all(math.isfinite(b) and b > 0 for b in bounds)):
            raise ValueError(f"windows: latency_buckets_seconds must be finite, positive, increasing: {bounds}")

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
            raise ValueError(f"unknown key(s) in 'windows': {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        if "spans" in section:
            try:
                kwargs["spans"] = tuple(WindowSpec(**spec) for spec in section["spans"])
            except TypeError as error:
                raise ValueError(f"windows.spans: {error}") from error
        if "latency_buckets_seconds" in section:
            kwargs["latency_buckets_seconds"] = tuple(float(b) for b in section["latency_buckets_seconds"])
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> WindowRules:
        """Read the ``windows`` section of a health rules file (defaults when absent).

        Raises:
            ValueError: the file is unreadable or the section is invalid.
        """
        return cls.from_rules(RuleFile.read(path, error=ValueError, what="health rules"))

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
            raise ValueError(f"{path}: 'windows' must be a mapping")  # noqa: TRY004
        try:
            return cls.from_mapping(section)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


def _latency_columns(bounds: tuple[float, ...]) -> list[str]:
    return [f"lat{i}" for i in range(len(bounds) + 1)]  # the last one is the +Inf bucket


def _quantile(q: float, bounds: tuple[float, ...], prefix: str) -> pl.Expr:
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


@dataclass(slots=True)
class _Store:
    spec: WindowSpec
    frame: pl.DataFrame  # <(terminal_id, bucket): counts>, one row per pair
    pending: list[pl.DataFrame] = field(default_factory=list)  # per-batch aggregates, same shape


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
        self._lat = _latency_columns(bounds)
        self._counts: tuple[str, ...] = (
            "transactions", *FAILURE_CLASSES, "chip_reads", "chip_card_failures", "swipes", *self._lat,
        )
        # Per-batch aggregates; a window frame stores the counts as UInt16 when they fit.
        # Bucket indexes since the epoch fit Int32 until 2106 for buckets of 2 s or more.
        bucket = pl.Int32 if min(s.bucket_seconds for s in self.rules.spans) >= 2 else pl.Int64
        schema = {"terminal_id": pl.String, "bucket": bucket, **dict.fromkeys(self._counts, pl.UInt32)}
        self._schema = schema
        narrow = {**schema, **dict.fromkeys(self._counts, pl.UInt16)}
        self._stores = {s.name: _Store(s, pl.DataFrame(schema=narrow)) for s in self.rules.spans}
        self._longest_us = max(s.length_seconds for s in self.rules.spans) * _US
        # One row per terminal: terminal_id, last_us (latest occurred_at, µs), run (consecutive
        # technical failures at the end of its stream), chip_seen, and the ATTRIBUTES.
        self._terminals = pl.DataFrame(schema={
            "terminal_id": pl.String, "last_us": pl.Int64, "run": pl.UInt32, "chip_seen": pl.Boolean,
            **dict.fromkeys(ATTRIBUTES, pl.String),
        })
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
        lat_index = pl.lit(len(bounds), dtype=pl.UInt32)
        for i in reversed(range(len(bounds))):  # smallest bound with latency <= bound (le)
            lat_index = pl.when(seconds <= bounds[i]).then(pl.lit(i, dtype=pl.UInt32)).otherwise(lat_index)
        events = frame.lazy().select(
            pl.col("terminal_id").cast(pl.String),
            pl.col("occurred_at").dt.epoch("us").clip(upper_bound=cap).alias("t"),
            pl.col("outcome").cast(pl.String),
            pl.when(pl.col("latency_ms").is_not_nan()).then(lat_index).alias("lat")
            if "latency_ms" in names else pl.lit(None, dtype=pl.UInt32).alias("lat"),
            (pl.col("entry_mode").cast(pl.String) if "entry_mode" in names
             else pl.lit(None, dtype=pl.String)).alias("entry_mode"),
            *[(pl.col(a).cast(pl.String) if a in names else pl.lit(None, dtype=pl.String)).alias(a)
              for a in ATTRIBUTES],
        ).collect()
        batch_max = events.get_column("t").max()
        assert isinstance(batch_max, int)
        watermark = max(batch_max, self.watermark_us or batch_max)
        oldest = watermark - self._longest_us
        kept = events.filter(pl.col("t") >= oldest)
        self.late_dropped += events.height - kept.height
        self.watermark_us = watermark
        self._update_terminals(events)
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
            width = store.spec.bucket_seconds * _US
            agg = (kept.lazy().filter(pl.col("t") // width >= self._first_bucket(store.spec))
                   .group_by("terminal_id", (pl.col("t") // width).cast(bucket).alias("bucket"))
                   .agg(counts).select(list(self._schema)).collect())
            store.pending.append(agg)
            if sum(p.height for p in store.pending) >= _MAX_PENDING_ROWS:
                self._compact(store)

    def _update_terminals(self, events: pl.DataFrame) -> None:
        """Fold one batch into the per-terminal row: latest time, run, chip seen, attributes."""
        technical = pl.col("outcome").is_in(TECHNICAL_CLASSES)
        # In the order read (each terminal's partition order), not sorted by event time:
        # a sort inside each batch would make the run depend on where batches split.
        batch = events.group_by("terminal_id", maintain_order=True).agg(
            pl.col("t").max().alias("b_last"),
            technical.all().alias("b_all_technical"),
            # Technical failures after the last non-technical event of the batch.
            (technical.cast(pl.UInt32).reverse().cum_min() .sum()).cast(pl.UInt32).alias("b_run"),
            (pl.col("entry_mode") == "chip").any().alias("b_chip"),
            *[pl.col(a).drop_nulls().last().alias(f"b_{a}") for a in ATTRIBUTES],
        )
        merged = self._terminals.join(batch, on="terminal_id", how="full", coalesce=True)
        touched = pl.col("b_last").is_not_null()
        run = (pl.when(pl.col("b_all_technical")).then(pl.col("run").fill_null(0) + pl.col("b_run"))
               .otherwise(pl.col("b_run")))
        self._terminals = merged.select(
            "terminal_id",
            pl.max_horizontal("last_us", "b_last").alias("last_us"),
            pl.when(touched).then(run).otherwise(pl.col("run")).cast(pl.UInt32).alias("run"),
            (pl.col("chip_seen").fill_null(False) | pl.col("b_chip").fill_null(False)).alias("chip_seen"),
            *[pl.coalesce(f"b_{a}", a).alias(a) for a in ATTRIBUTES],
        )

    def _compact(self, store: _Store) -> None:
        """Merge the pending batch aggregates into the window frame and prune old buckets."""
        if store.pending:
            pending = pl.concat(store.pending)
            store.pending = []
            lowest = pending.get_column("bucket").min()
            frame = store.frame
            recent = frame.filter(pl.col("bucket") >= lowest)
            merged = (pl.concat([recent, pending], how="vertical_relaxed").group_by("terminal_id", "bucket")
                      .agg(pl.col(list(self._counts)).cast(pl.UInt32).sum()).select(list(self._schema)))
            store.frame = pl.concat([frame.filter(pl.col("bucket") < lowest), self._narrow(merged)],
                                    how="vertical_relaxed")
        if self.watermark_us is not None:
            store.frame = store.frame.filter(pl.col("bucket") >= self._first_bucket(store.spec))
        if store.frame.schema["transactions"] != pl.UInt16:  # a large count was pruned since?
            store.frame = self._narrow(store.frame)

    def _narrow(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with UInt16 counts when every count fits (unchanged otherwise)."""
        largest = frame.get_column("transactions").max()
        if isinstance(largest, int) and largest > _NARROW_MAX:
            return frame
        return frame.with_columns(pl.col(list(self._counts)).cast(pl.UInt16))

    def _first_bucket(self, spec: WindowSpec) -> int:
        """Oldest bucket of ``spec`` that a window ending at the watermark can reach."""
        assert self.watermark_us is not None
        return self.watermark_us // (spec.bucket_seconds * _US) - spec.buckets + 1

    def bucket_rows(self) -> dict[str, int]:
        """``{window name: (terminal, bucket) rows held}`` after merging pending batches."""
        for store in self._stores.values():
            self._compact(store)
        return {name: store.frame.height for name, store in self._stores.items()}

    def forget(self, terminal_ids: set[str]) -> None:
        """Drop every trace of these terminals (decommissioned, retention passed)."""
        if not terminal_ids:
            return
        gone = pl.DataFrame({"terminal_id": sorted(terminal_ids)}, schema={"terminal_id": pl.String})
        for store in self._stores.values():
            self._compact(store)
            store.frame = store.frame.join(gone, on="terminal_id", how="anti", maintain_order="left")
        self._terminals = self._terminals.join(gone, on="terminal_id", how="anti", maintain_order="left")

    def estimated_size(self) -> int:
        """Bytes held by the window frames and the terminal table (polars' estimate)."""
        return int(self._terminals.estimated_size()
                   + sum(s.frame.estimated_size() + sum(p.estimated_size() for p in s.pending)
                         for s in self._stores.values()))

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
        for store in self._stores.values():
            self._compact(store)
            spec = store.spec
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
                *[_quantile(q, self.rules.latency_buckets_seconds, p).alias(f"{p}latency_{name}_seconds")
                  for name, q in QUANTILES],
                fallbacks.cast(pl.UInt32).alias(p + "swipe_fallbacks"),
                pl.when(pl.col(p + "chip_reads") + fallbacks > 0)
                .then(fallbacks / (pl.col(p + "chip_reads") + fallbacks)).alias(p + "swipe_fallback_ratio"),
                pl.when(pl.col(p + "chip_reads") > 0)
                .then(pl.col(p + "chip_card_failures") / pl.col(p + "chip_reads"))
                .alias(p + "chip_card_failure_ratio"),
            ).drop([p + c for c in self._lat] + [p + "swipes", p + "chip_card_failures"])
        return result
