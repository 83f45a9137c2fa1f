"""Silent terminals: traffic far below the terminal's own usual level, or none at all.

Baseline: the expected transactions per hour of each terminal for each of the
168 hours of the week (Monday 00:00–01:00 local = hour 0), in the terminal's
local time (so 9 a.m. stays 9 a.m. across daylight-saving changes). It is learned
from history with polars (:func:`learn_baseline`: mean count of each
hour-of-week slot over the weeks the terminal was seen) and then updated from
live traffic, one completed hour at a time, as an exponential moving average.

Rules (``rules/health.yaml``, section ``silent``), evaluated at wall-clock ``now``
by :meth:`SilentDetector.evaluate`; a terminal is silent when it is **open**
(terminal registry opening hours), not decommissioned, and either:

* ``no_traffic``: no transaction for ``silent_after_seconds`` — counted from the
  later of its last transaction, the start of its current open period and the
  detector's start — while its baseline for the current hour is at least
  ``min_expected_per_hour`` and expects at least ``min_expected_in_gap``
  transactions in that silence; or
* ``volume_drop``: over the last hour it made fewer than ``drop_ratio`` × the
  baseline's expectation for that hour (itself at least ``min_expected_per_hour``),
  having been open all that hour and the detector running for at least an hour.

Last-seen times are event times (``occurred_at``), capped at the wall clock, so a
terminal with a fast clock cannot hide its silence; consumer lag adds to
apparent silence (the pipeline-stalled alert covers that case).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from monitor.health.terminals import TerminalRegistry, TerminalRegistryLoader
from monitor.pipeline.watermark import EventClock
from monitor.rulebook import RuleFile

__all__ = ["HOURS_PER_WEEK", "Baseline", "SilentDetector", "SilentRules", "learn_baseline"]

HOURS_PER_WEEK: Final = 168
#: 1970-01-01 was a Thursday: local hour index 0 is hour 72 of its week (Monday = 0).
_EPOCH_HOUR_OF_WEEK: Final = 72
_SLOTS: Final = tuple(f"h{hour}" for hour in range(HOURS_PER_WEEK))
#: Live counts are kept in 5-minute buckets: fine enough for a one-hour window.
_BUCKET_US: Final = 300 * 1_000_000
_HOUR_US: Final = 3600 * 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class SilentRules:
    """The ``silent`` section of ``rules/health.yaml`` (meaning of each value there)."""

    silent_after_seconds: float = 900.0
    min_expected_in_gap: float = 3.0
    drop_ratio: float = 0.2
    min_expected_per_hour: float = 6.0
    baseline_alpha: float = 0.125
    interval_seconds: float = 60.0
    misfire_grace_seconds: int = 30

    @classmethod
    def load(cls, path: Path) -> SilentRules:
        """Read the ``silent`` section of a health rules file (other sections are ignored).

        Raises:
            ValueError: the file is unreadable, the section is missing, a key is unknown
                or a value is not a positive number (``drop_ratio`` and ``baseline_alpha``
                must also be at most 1).
        """
        return cls.from_rules(RuleFile.read(path, error=ValueError, what="health rules"))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> SilentRules:
        """The ``silent`` section of the health rules file, read once at start (see :meth:`load`)."""
        section, path = rules.section("silent"), rules.path
        if not isinstance(section, dict):
            raise ValueError(f"{path}: no 'silent' section")  # noqa: TRY004 (a file, not an argument)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) in 'silent': {', '.join(unknown)}")
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{path}: silent.{key} must be a positive number, not {value!r}")
            if key in ("drop_ratio", "baseline_alpha") and value > 1:
                raise ValueError(f"{path}: silent.{key} must be at most 1, not {value!r}")
        if "misfire_grace_seconds" in section:  # APScheduler wants whole seconds
            section = {**section, "misfire_grace_seconds": max(1, round(section["misfire_grace_seconds"]))}
        return cls(**section)


def _zones(terminal_ids: pl.Series, registry: TerminalRegistry | None) -> pl.DataFrame:
    """``terminal_id, timezone`` for each ID (UTC when the registry does not know it)."""
    frame = pl.DataFrame({"terminal_id": terminal_ids.cast(pl.String)})
    if registry is None or len(registry) == 0:
        return frame.with_columns(pl.lit("UTC").alias("timezone"))
    return frame.join(registry.table.select("terminal_id", "timezone"), on="terminal_id",
                      how="left", maintain_order="left").with_columns(pl.col("timezone").fill_null("UTC"))


def _local_hour(column: str, zone: str) -> pl.Expr:
    """Local wall-clock hours since 1970-01-01 00:00 local, for an aware datetime column."""
    return (pl.col(column).dt.convert_time_zone(zone).dt.replace_time_zone(None)
            .dt.epoch("s") // 3600)


def _hour_of_week(at: datetime, zone: str) -> tuple[int, float]:
    """(hour of the week, fraction of that hour elapsed) of ``at`` in ``zone``."""
    local = pl.select(pl.lit(at).dt.convert_time_zone(zone)).item()
    hour = (local.weekday() * 24 + local.hour) % HOURS_PER_WEEK
    return hour, (local.minute * 60 + local.second) / 3600


@dataclass(slots=True)
class Baseline:
    """Expected transactions per hour, per terminal and hour of the week.

    Attributes:
        frame: ``terminal_id`` (sorted, unique) and one Float32 column per hour of the
            week, ``h0`` … ``h167`` (transactions per hour; 0 where none are expected).
            Wide on purpose: 100,000 terminals take 67 MB, and an update touches one column.
    """

    frame: pl.DataFrame

    @classmethod
    def empty(cls) -> Baseline:
        """A baseline that expects nothing of any terminal (no terminal can be silent)."""
        return cls(pl.DataFrame(schema={"terminal_id": pl.String, **dict.fromkeys(_SLOTS, pl.Float32)}))

    def __len__(self) -> int:
        return self.frame.height

    def expected(self, terminal_id: str, hour_of_week: int) -> float:
        """Expected transactions per hour of one terminal in one hour of the week (0 if unknown)."""
        row = self.frame.filter(pl.col("terminal_id") == terminal_id)
        return float(row.item(0, _SLOTS[hour_of_week])) if row.height else 0.0

    def write(self, path: Path) -> None:
        """Save as Parquet (to restart without re-learning)."""
        self.frame.write_parquet(path)

    @classmethod
    def read(cls, path: Path) -> Baseline:
        """Load a baseline saved by :meth:`write`.

        Raises:
            ValueError: the file lacks ``terminal_id`` or an hour column.
        """
        frame = pl.read_parquet(path)
        missing = [c for c in ("terminal_id", *_SLOTS) if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: not a baseline (missing {', '.join(missing[:3])} …)")
        return cls(frame.select("terminal_id", *[pl.col(c).cast(pl.Float32) for c in _SLOTS]))

    def update_hour(self, counts: pl.DataFrame, hour_start: datetime, alpha: float,
                    registry: TerminalRegistry | None = None) -> Baseline:
        """Fold one completed hour of live traffic into the baseline.

        Args:
            counts: ``terminal_id, count`` of transactions in the hour; terminals of
                the baseline that are absent made none (their slot moves towards 0).
            hour_start: start of the hour (aware); each terminal's slot is that hour's
                hour of the week in the terminal's own zone.
            alpha: weight of the new hour (exponential moving average).
            registry: for the terminals' time zones (``None``: all UTC).

        Returns:
            A new baseline (this one is unchanged); terminals seen for the first time get
            a row of zeros first.
        """
        merged = self.frame.join(counts.select("terminal_id", pl.col("count").cast(pl.Float32)),
                                 on="terminal_id", how="full", coalesce=True)
        merged = merged.with_columns(pl.col(_SLOTS).fill_null(0.0), pl.col("count").fill_null(0.0))
        zones = _zones(merged.get_column("terminal_id"), registry).get_column("timezone")
        merged = merged.with_columns(zones.alias("_zone"))
        updates = []
        for zone in zones.unique().to_list():
            slot = _SLOTS[_hour_of_week(hour_start, zone)[0]]
            updates.append((zone, slot))
        for zone, slot in updates:
            in_zone = pl.col("_zone") == zone
            merged = merged.with_columns(
                pl.when(in_zone).then(pl.col(slot) + alpha * (pl.col("count") - pl.col(slot)))
                .otherwise(pl.col(slot)).cast(pl.Float32).alias(slot))
        return Baseline(merged.drop("count", "_zone").sort("terminal_id"))


def learn_baseline(events: pl.DataFrame | pl.LazyFrame,
                   registry: TerminalRegistry | None = None) -> Baseline:
    """Learn the hour-of-week baseline from history.

    Args:
        events: ``terminal_id`` and ``occurred_at`` (aware Datetime), one row per
            transaction — or one row per terminal and hour with a ``count`` column
            (hourly counts, ``occurred_at`` = any instant in the hour).
        registry: the terminals' time zones (``None``: all UTC).

    Returns:
        The :class:`Baseline`: for each terminal and hour of the week, the mean count of
        that hour over every occurrence of it between the terminal's first transaction
        and the end of the history (weeks without traffic in that hour count as 0).
    """
    lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
    names = lazy.collect_schema().names()
    weight = pl.col("count").cast(pl.Float64) if "count" in names else pl.lit(1.0)
    raw = lazy.select(pl.col("terminal_id").cast(pl.String), "occurred_at", weight.alias("n")).collect()
    if raw.height == 0:
        return Baseline.empty()
    end = raw.get_column("occurred_at").max()
    zoned = raw.with_columns(_zones(raw.get_column("terminal_id"), registry).get_column("timezone"))
    parts = []
    for zone in zoned.get_column("timezone").unique().to_list():
        end_hour = pl.select(pl.lit(end).dt.convert_time_zone(zone).dt.replace_time_zone(None)
                             .dt.epoch("s") // 3600).item()
        parts.append(zoned.filter(pl.col("timezone") == zone)
                     .select("terminal_id", "n", _local_hour("occurred_at", zone).alias("hour"),
                             pl.lit(end_hour, dtype=pl.Int64).alias("end")))
    hours = pl.concat(parts)
    shift = _EPOCH_HOUR_OF_WEEK
    long = (
        hours.with_columns(pl.col("hour").min().over("terminal_id").alias("start"),
                           ((pl.col("hour") + shift) % HOURS_PER_WEEK).alias("how"))
        .group_by("terminal_id", "how")
        .agg(pl.col("n").sum(), pl.col("start").first(), pl.col("end").first())
        # How many times hour-of-week `how` occurs in local hours [start, end].
        .with_columns(((pl.col("end") + shift - pl.col("how")) // HOURS_PER_WEEK
                       - (pl.col("start") - 1 + shift - pl.col("how")) // HOURS_PER_WEEK)
                      .clip(lower_bound=1).alias("occurrences"))
        .select("terminal_id", pl.format("h{}", "how").alias("slot"),
                (pl.col("n") / pl.col("occurrences")).cast(pl.Float32).alias("expected"))
    )
    wide = long.pivot(on="slot", index="terminal_id", values="expected")
    return Baseline(wide.select(
        "terminal_id",
        *[(pl.col(s) if s in wide.columns else pl.lit(None)).cast(pl.Float32).fill_null(0.0).alias(s)
          for s in _SLOTS],
    ).sort("terminal_id"))


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


class SilentDetector:
    """Keeps what silence detection needs from live traffic and applies the rules.

    Args:
        rules: the ``silent`` rules.
        baseline: learned baseline (updated in place as hours complete).
        registry: terminal registry holder (opening hours, time zones, status).
        started_at: when the detector started watching (aware; default: now). Silence
            is never counted from before it.
        clock: the pipeline's event time (:class:`monitor.pipeline.watermark.EventClock`), or
            ``None``. With one, an hour is folded into the baseline only once the
            watermark has passed its end, so every event of that hour is in it
            whenever the job runs and however far the consumer lags.

    State (all event time, in microseconds since the epoch, UTC):
    ``last_seen`` ``{terminal_id: last occurred_at}`` and 5-minute bucket counts.
    Not thread-safe: call :meth:`observe` and :meth:`evaluate` from one event loop.
    """

    def __init__(self, rules: SilentRules, baseline: Baseline | None = None, *,
                 registry: TerminalRegistryLoader | None = None,
                 started_at: datetime | None = None, clock: EventClock | None = None) -> None:
        self.rules = rules
        self.clock = clock
        self.baseline = baseline or Baseline.empty()
        self.registry = registry or TerminalRegistryLoader(None)
        self.started_at = started_at or datetime.now(UTC)
        self.last_seen: dict[str, int] = {}  # <terminal_id: last occurred_at, µs>
        self._pending: list[pl.DataFrame] = []  # per-batch (terminal_id, bucket, count) frames
        # <bucket: start µs // _BUCKET_US> (Int32: 5-minute buckets since the epoch fit until 22,000 AD)
        self._counts = pl.DataFrame(schema={"terminal_id": pl.String, "bucket": pl.Int32,
                                            "count": pl.UInt32})
        self._folded_hour: int | None = None  # last UTC hour (µs // _HOUR_US) in the baseline
        #: The last evaluation: ``terminal_id, reason, expected_per_hour, observed_last_hour,
        #: silent_seconds`` of each silent terminal.
        self.last_result = pl.DataFrame()

    def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
        """Take one batch's frame (``terminal_id``, ``occurred_at`` in UTC), aggregated once.

        Args:
            frame: the classified batch frame (extra columns are ignored).
            now: the wall clock (default: now); later event times are capped to it.
        """
        if frame.height == 0:
            return
        cap = _micros(now or datetime.now(UTC))
        agg = (frame.select("terminal_id",
                            pl.col("occurred_at").dt.epoch("us").clip(upper_bound=cap).alias("t"))
               .group_by("terminal_id", (pl.col("t") // _BUCKET_US).cast(pl.Int32).alias("bucket"))
               .agg(pl.len().cast(pl.UInt32).alias("count"), pl.col("t").max()))
        self._pending.append(agg.select("terminal_id", "bucket", "count"))
        latest = agg.group_by("terminal_id").agg(pl.col("t").max())
        seen = self.last_seen
        for terminal_id, t in latest.iter_rows():
            if t > seen.get(terminal_id, -1):
                seen[terminal_id] = t

    def _compact(self, now_us: int) -> None:
        if self._pending:
            self._counts = (pl.concat([self._counts, *self._pending])
                            .group_by("terminal_id", "bucket").agg(pl.col("count").sum()))
            self._pending.clear()
        current_hour = now_us // _HOUR_US
        if self._folded_hour is None:
            # The hour the detector started in is incomplete: never fold it.
            self._folded_hour = _micros(self.started_at) // _HOUR_US
        registry = self.registry.current
        while self._folded_hour + 1 < current_hour and self._complete(self._folded_hour + 1):
            hour = self._folded_hour + 1
            first, last = hour * _HOUR_US // _BUCKET_US, (hour + 1) * _HOUR_US // _BUCKET_US
            counts = (self._counts.filter(pl.col("bucket").is_between(first, last, closed="left"))
                      .group_by("terminal_id").agg(pl.col("count").sum()))
            self.baseline = self.baseline.update_hour(
                counts, _EPOCH + timedelta(microseconds=hour * _HOUR_US),
                self.rules.baseline_alpha, registry)
            self._folded_hour = hour
        # One hour window + the hours still to fold.
        oldest = min(now_us - 2 * _HOUR_US, (self._folded_hour + 1) * _HOUR_US) // _BUCKET_US
        self._counts = self._counts.filter(pl.col("bucket") >= oldest)

    def _complete(self, hour: int) -> bool:
        """Whether every event of UTC ``hour`` (µs // _HOUR_US) is in (the watermark passed it)."""
        if self.clock is None:
            return True
        watermark = self.clock.watermark_us
        return watermark is not None and watermark >= (hour + 1) * _HOUR_US

    def evaluate(self, now: datetime | None = None) -> set[str]:
        """The IDs of the terminals silent at ``now`` (aware; default: the wall clock).

        Also folds completed hours into the baseline and keeps the details in
        :attr:`last_result`.
        """
        now = now or datetime.now(UTC)
        now_us = _micros(now)
        self._compact(now_us)
        registry = self.registry.current
        known: list[str] = self.baseline.frame.get_column("terminal_id").to_list()
        candidates = pl.Series("terminal_id", sorted(set(known) | set(self.last_seen)),
                               dtype=pl.String)
        gone = registry.decommissioned()
        if gone:
            candidates = candidates.filter(~candidates.is_in(sorted(gone)))
        state = registry.schedule_frame(candidates, now).filter(pl.col("is_open"))
        rates = self._rates(state, now)
        window_start = (now_us - _HOUR_US) // _BUCKET_US
        observed = (self._counts.filter(pl.col("bucket") >= window_start)
                    .group_by("terminal_id").agg(pl.col("count").sum().alias("observed")))
        seen = pl.DataFrame({"terminal_id": list(self.last_seen),
                             "last_seen": list(self.last_seen.values())},
                            schema={"terminal_id": pl.String, "last_seen": pl.Int64})
        started_us, rules = _micros(self.started_at), self.rules
        frame = (
            rates.join(seen, on="terminal_id", how="left")
            .join(observed, on="terminal_id", how="left")
            .with_columns(
                pl.col("observed").fill_null(0),
                pl.max_horizontal(pl.col("last_seen").fill_null(started_us), pl.lit(started_us),
                                  pl.col("open_since").dt.epoch("us").fill_null(started_us)
                                  ).alias("quiet_from"))
            .with_columns(((now_us - pl.col("quiet_from")) / 1e6).alias("silent_seconds"))
        )
        no_traffic = ((pl.col("silent_seconds") >= rules.silent_after_seconds)
                      & (pl.col("rate_now") >= rules.min_expected_per_hour)
                      & (pl.col("rate_now") * pl.col("silent_seconds") / 3600 >= rules.min_expected_in_gap))
        whole_hour = now_us - _HOUR_US
        volume_drop = ((started_us <= whole_hour)
                       & (pl.col("open_since").dt.epoch("us").fill_null(0) <= whole_hour)
                       & (pl.col("expected_last_hour") >= rules.min_expected_per_hour)
                       & (pl.col("observed") < rules.drop_ratio * pl.col("expected_last_hour")))
        self.last_result = (
            frame.with_columns(pl.when(no_traffic).then(pl.lit("no_traffic"))
                               .when(volume_drop).then(pl.lit("volume_drop")).alias("reason"))
            .filter(pl.col("reason").is_not_null())
            .select("terminal_id", "reason", pl.col("expected_last_hour").alias("expected_per_hour"),
                    pl.col("observed").alias("observed_last_hour"), "silent_seconds")
            .sort("terminal_id")
        )
        return set(self.last_result.get_column("terminal_id").to_list())

    def _rates(self, state: pl.DataFrame, now: datetime) -> pl.DataFrame:
        """``state`` + ``rate_now`` (baseline of the current hour) and ``expected_last_hour``."""
        parts: list[pl.DataFrame] = []
        for zone in state.get_column("timezone").unique().to_list():
            hour, elapsed = _hour_of_week(now, zone)
            current, previous = _SLOTS[hour], _SLOTS[(hour - 1) % HOURS_PER_WEEK]
            # Join only the two hour-of-week columns this zone needs, not all 168.
            slots = list(dict.fromkeys((current, previous)))
            joined = state.filter(pl.col("timezone") == zone).join(
                self.baseline.frame.select("terminal_id", *slots), on="terminal_id", how="inner")
            parts.append(joined.select(
                "terminal_id", "open_since",
                pl.col(current).cast(pl.Float64).alias("rate_now"),
                # The last 60 minutes overlap the previous hour slot and this one.
                (pl.col(previous) * (1 - elapsed) + pl.col(current) * elapsed)
                .cast(pl.Float64).alias("expected_last_hour")))
        if not parts:
            return pl.DataFrame(schema={"terminal_id": pl.String, "open_since": pl.Datetime("us", "UTC"),
                                        "rate_now": pl.Float64, "expected_last_hour": pl.Float64})
        return pl.concat(parts)

