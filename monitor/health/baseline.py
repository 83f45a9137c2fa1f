"""The traffic baseline of silent detection: expected transactions per terminal and hour of the week.

The 168 hours of the week (Monday 00:00–01:00 local = hour 0) are in the terminal's
local time, so 9 a.m. stays 9 a.m. across daylight-saving changes. The baseline is
learned from history with polars (:func:`learn_baseline`: mean count of each
hour-of-week slot over the weeks the terminal was seen), then updated from live
traffic one completed hour at a time as an exponential moving average
(:meth:`Baseline.update_hour`, driven by :class:`monitor.health.silent.SilentDetector`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from monitor.errors import ConfigurationError
from monitor.health.terminals import TerminalRegistry

__all__ = ["HOURS_PER_WEEK", "HOUR_SLOTS", "Baseline", "hour_of_week", "learn_baseline", "terminal_zones"]

#: Hours in a week: the baseline's slots per terminal.
HOURS_PER_WEEK: Final = 168
#: 1970-01-01 was a Thursday: local hour index 0 is hour 72 of its week (Monday = 0).
_EPOCH_HOUR_OF_WEEK: Final = 72
#: The baseline's hour-of-week columns, ``h0`` (Monday 00:00-01:00 local) … ``h167``.
HOUR_SLOTS: Final = tuple(f"h{hour}" for hour in range(HOURS_PER_WEEK))


def terminal_zones(terminal_ids: pl.Series, registry: TerminalRegistry | None) -> pl.DataFrame:
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


def hour_of_week(at: datetime, zone: str) -> tuple[int, float]:
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
        return cls(pl.DataFrame(schema={"terminal_id": pl.String, **dict.fromkeys(HOUR_SLOTS, pl.Float32)}))

    def __len__(self) -> int:
        return self.frame.height

    def expected(self, terminal_id: str, hour_of_week: int) -> float:
        """Expected transactions per hour of one terminal in one hour of the week (0 if unknown)."""
        row = self.frame.filter(pl.col("terminal_id") == terminal_id)
        return float(row.item(0, HOUR_SLOTS[hour_of_week])) if row.height else 0.0

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
        missing = [c for c in ("terminal_id", *HOUR_SLOTS) if c not in frame.columns]
        if missing:
            raise ConfigurationError(f"{path}: not a baseline (missing {', '.join(missing[:3])} …)")
        return cls(frame.select("terminal_id", *[pl.col(c).cast(pl.Float32) for c in HOUR_SLOTS]))

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
        merged = merged.with_columns(pl.col(HOUR_SLOTS).fill_null(0.0), pl.col("count").fill_null(0.0))
        zones = terminal_zones(merged.get_column("terminal_id"), registry).get_column("timezone")
        merged = merged.with_columns(zones.alias("_zone"))
        updates = []
        for zone in zones.unique().to_list():
            slot = HOUR_SLOTS[hour_of_week(hour_start, zone)[0]]
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
    zoned = raw.with_columns(terminal_zones(raw.get_column("terminal_id"), registry).get_column("timezone"))
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
          for s in HOUR_SLOTS],
    ).sort("terminal_id"))
