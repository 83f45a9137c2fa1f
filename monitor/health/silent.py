"""Silent terminals: traffic far below the terminal's own usual level, or none at all.

Baseline (:mod:`monitor.health.baseline`): the expected transactions per hour of each
terminal for each of the 168 hours of the week, in the terminal's local time, learned
from history and then updated from live traffic, one completed hour at a time, as an
exponential moving average.

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

from monitor.errors import ConfigurationError
from monitor.health.baseline import (
    HOUR_SLOTS,
    HOURS_PER_WEEK,
    Baseline,
    hour_of_week,
)
from monitor.health.terminals import TerminalRegistryLoader
from monitor.pipeline.watermark import EventClock
from monitor.rulebook import RuleFile

__all__ = ["SilentDetector", "SilentRules"]

#: Live counts are kept in 5-minute buckets: fine enough for a one-hour window.
_BUCKET_US: Final = 300 * 1_000_000
_HOUR_US: Final = 3600 * 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SEEN_SCHEMA: Final = {"terminal_id": pl.String(), "last_seen": pl.Int64()}


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
        return cls.from_rules(RuleFile.read(path, error=ConfigurationError, what="health rules"))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> SilentRules:
        """The ``silent`` section of the health rules file, read once at start (see :meth:`load`)."""
        section, path = rules.section("silent"), rules.path
        if not isinstance(section, dict):
            raise ConfigurationError(f"{path}: no 'silent' section")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigurationError(f"{path}: unknown key(s) in 'silent': {', '.join(unknown)}")
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{path}: silent.{key} must be a positive number, not {value!r}")
            if key in ("drop_ratio", "baseline_alpha") and value > 1:
                raise ConfigurationError(f"{path}: silent.{key} must be at most 1, not {value!r}")
        if "misfire_grace_seconds" in section:  # APScheduler wants whole seconds
            section = {**section, "misfire_grace_seconds": max(1, round(section["misfire_grace_seconds"]))}
        return cls(**section)


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

    State (all event time, in microseconds since the epoch, UTC): the last ``occurred_at``
    of each terminal (:attr:`last_seen`) and 5-minute bucket counts, both kept as per-batch
    polars aggregates folded in at evaluation. Not thread-safe: call :meth:`observe` and
    :meth:`evaluate` from one thread (the health thread in the monitor).
    """

    def __init__(self, rules: SilentRules, baseline: Baseline | None = None, *,
                 registry: TerminalRegistryLoader | None = None,
                 started_at: datetime | None = None, clock: EventClock | None = None) -> None:
        self.rules = rules
        self.clock = clock
        self.baseline = baseline or Baseline.empty()
        self.registry = registry or TerminalRegistryLoader(None)
        self.started_at = started_at or datetime.now(UTC)
        # <terminal_id, last_seen: last occurred_at µs>, one row per terminal, merged at evaluation
        self._seen = pl.DataFrame(schema=_SEEN_SCHEMA)
        self._pending_seen: list[pl.DataFrame] = []  # per-batch (terminal_id, last_seen) frames
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
        self._pending_seen.append(agg.group_by("terminal_id").agg(pl.col("t").max().alias("last_seen")))

    @property
    def last_seen(self) -> dict[str, int]:
        """``{terminal_id: last occurred_at, µs since the epoch}`` (built on each read: for tests and tools)."""
        return dict(self._merged_seen().iter_rows())

    def _merged_seen(self) -> pl.DataFrame:
        """``terminal_id, last_seen`` with every batch so far folded in (one row per terminal)."""
        if self._pending_seen:
            self._seen = (pl.concat([self._seen, *self._pending_seen])
                          .group_by("terminal_id").agg(pl.col("last_seen").max()))
            self._pending_seen.clear()
        return self._seen

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
        seen = self._merged_seen()
        # Every terminal with a baseline or traffic, sorted (in polars: no Python set of the fleet).
        candidates = (pl.concat([self.baseline.frame.select("terminal_id"), seen.select("terminal_id")])
                      .unique().sort("terminal_id").get_column("terminal_id"))
        gone = registry.decommissioned()
        if gone:
            candidates = candidates.filter(~candidates.is_in(list(gone)))
        state = registry.schedule_frame(candidates, now).filter(pl.col("is_open"))
        rates = self._rates(state, now)
        window_start = (now_us - _HOUR_US) // _BUCKET_US
        observed = (self._counts.filter(pl.col("bucket") >= window_start)
                    .group_by("terminal_id").agg(pl.col("count").sum().alias("observed")))
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
            hour, elapsed = hour_of_week(now, zone)
            current, previous = HOUR_SLOTS[hour], HOUR_SLOTS[(hour - 1) % HOURS_PER_WEEK]
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

