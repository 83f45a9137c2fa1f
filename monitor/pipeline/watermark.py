"""Event time across Kafka partitions: each partition's progress, the watermark, late events.

Events are keyed by terminal ID, so each partition keeps its terminals' order, but
partitions are read in no fixed order relative to each other (a consumer drains
one partition's fetched records, then the next's). Results that depend on "all the
events up to time T" (incident buckets, baseline hours) wait for the *watermark*,
the event time up to which every partition has been read, as stream processors do.
The rule, for one instance and the partitions it reads:

1. A partition's *latest* is the latest event time read from it so far.
2. An event is **late** when its event time is more than ``allowed_lateness_seconds``
   behind the latest event read *before it from its own partition*, or behind the
   watermark when it is read. The first test depends only on the partition's own
   order, so it gives the same answer however the events are batched or the
   partitions interleaved; the second only matters for a partition read far behind
   the others (point 3). Callers leave late events out of what must not depend on
   timing (incident detection, terminal health) and count them.
3. The **watermark** is the minimum over the partitions this instance reads of their
   latest minus ``allowed_lateness_seconds``, where a partition read to its end
   (*caught up*: nothing left to read when the consumer last fetched) counts as the
   most advanced one; a partition with nothing read yet holds it back, and so does
   one with unread messages, unless it has made no progress (no event, not caught up)
   for ``stalled_partition_seconds`` of wall-clock time: a stuck partition cannot
   freeze the instance. The watermark never goes back.

So the same events give the same late events and the same watermark steps in
whatever batches and partition interleaving they arrive, as long as no partition
stalls; with several instances, each judges only the partitions it is assigned
(with scale-out, :mod:`monitor.pipeline.fleet` applies the same rules over every
partition of the topic for incidents).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from monitor.frames import collect_all

__all__ = ["EventClock", "PartitionProgress"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = 1_000_000
# Built once (expressions cost Python time): the event times in µs, one source's partition.
_EPOCH_US: Final = pl.col("t").dt.epoch("us")
_PARTITION_ZERO: Final = pl.lit(0, dtype=pl.Int64).alias("p")


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """What the consumer knows of its partitions after fetching one batch.

    Attributes:
        assigned: the partitions this instance reads (of the topic the events come from).
        caught_up: those among them read to the end (position at the high watermark of
            the last fetch): they hold nothing back.
    """

    assigned: frozenset[int]
    caught_up: frozenset[int] = field(default_factory=frozenset)


class EventClock:
    """Tracks event time per partition and the instance's watermark (see the module docstring).

    Args:
        allowed_lateness_seconds: how far an event may be behind its partition's latest
            earlier event (and the watermark behind the partitions' latest) and still count.
        stalled_partition_seconds: wall-clock time without progress after which a
            partition that is neither caught up nor delivering stops holding the watermark.
        monotonic: the wall clock for stall detection (seconds; tests pass their own).

    Not thread-safe: the batch processor calls :meth:`advance` once per batch.
    """

    def __init__(self, *, allowed_lateness_seconds: float = 10.0,
                 stalled_partition_seconds: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if allowed_lateness_seconds < 0 or stalled_partition_seconds <= 0:
            raise ValueError("allowed_lateness_seconds must be >= 0 and stalled_partition_seconds > 0")
        self.lateness_us = int(allowed_lateness_seconds * _US)
        self.stalled_seconds = stalled_partition_seconds
        self._monotonic = monotonic
        self._latest: dict[int, int | None] = {}  # <partition: latest event time read, µs> (None: nothing yet)
        self._progressed: dict[int, float] = {}  # <partition: monotonic time of its last progress>
        self._caught_up: frozenset[int] = frozenset()
        #: The watermark (µs since the epoch), ``None`` until the first one.
        self.watermark_us: int | None = None
        #: Late events seen so far.
        self.late_events = 0

    def __repr__(self) -> str:
        return (f"EventClock(watermark={self.watermark}, partitions={sorted(self._latest)}, "
                f"late_events={self.late_events})")

    @property
    def watermark(self) -> datetime | None:
        """The watermark as an aware datetime, ``None`` until there is one."""
        if self.watermark_us is None:
            return None
        return _EPOCH + timedelta(microseconds=self.watermark_us)

    def advance(self, times: pl.Series, partitions: Sequence[int] | pl.Series | None = None,
                progress: PartitionProgress | None = None) -> pl.Series:
        """Take one batch: mark its late events, then move the watermark.

        Args:
            times: the events' ``occurred_at`` (Datetime, UTC), in the order read.
            partitions: each event's partition, aligned with ``times``; ``None``: all
                from partition 0 (one ordered source).
            progress: the consumer's partitions after this batch; ``None``: the
                partitions seen so far, none caught up.

        Returns:
            A Boolean series aligned with ``times``: ``True`` for a late event.
        """
        now = self._monotonic()
        if progress is not None:
            self._assign(progress, now)
        if times.len() == 0:
            self._move(now)
            return pl.Series("late", [], dtype=pl.Boolean)
        columns = [times.alias("t")]
        if partitions is not None:
            columns.append(pl.Series("p", partitions, dtype=pl.Int64))
        events = pl.DataFrame(columns).lazy()
        events = events.with_columns(_EPOCH_US) if partitions is not None \
            else events.with_columns(_EPOCH_US, _PARTITION_ZERO)
        known = {p: t for p, t in self._latest.items() if t is not None}
        prior = pl.max_horizontal(
            # The latest event time read before each event from its partition.
            pl.col("t").cum_max().shift(1).over("p"),
            pl.col("p").replace_strict(known, default=None, return_dtype=pl.Int64),
        )
        threshold = prior - self.lateness_us
        if self.watermark_us is not None:
            threshold = pl.max_horizontal(threshold, pl.lit(self.watermark_us))
        # One polars call for both: each event's lateness, each partition's latest time.
        marked, latest_by_partition = collect_all([
            events.select((pl.col("t") < threshold).fill_null(False).alias("late")),
            events.group_by("p").agg(pl.col("t").max()),
        ])
        late = marked.to_series()
        for p, latest in latest_by_partition.iter_rows():
            held = self._latest.get(p)
            self._latest[p] = latest if held is None else max(held, latest)
            self._progressed[p] = now
        self.late_events += int(late.sum())
        self._move(now)
        return late

    def _assign(self, progress: PartitionProgress, now: float) -> None:
        for p in set(self._latest) - progress.assigned:  # revoked: holds nothing back any more
            del self._latest[p]
            self._progressed.pop(p, None)
        for p in progress.assigned:
            if p not in self._latest:
                self._latest[p] = None
                self._progressed[p] = now
        for p in progress.caught_up:
            self._progressed[p] = now
        self._caught_up = progress.caught_up

    def _move(self, now: float) -> None:
        latest = [t for t in self._latest.values() if t is not None]
        if not latest:
            return
        leader = max(latest)
        holding: list[int] = []
        for p, t in self._latest.items():
            if p in self._caught_up:
                holding.append(leader)
            elif now - self._progressed.get(p, now) >= self.stalled_seconds:
                continue  # stuck: it must not freeze the instance
            elif t is None:
                return  # nothing read yet from a partition with messages to read: wait for it
            else:
                holding.append(t)
        candidate = (min(holding) if holding else leader) - self.lateness_us
        if self.watermark_us is None or candidate > self.watermark_us:
            self.watermark_us = candidate

    def partitions(self) -> Collection[int]:
        """The partitions being tracked (assigned or seen)."""
        return tuple(self._latest)

    def positions(self) -> dict[int, tuple[int | None, bool]]:
        """Each tracked partition's latest event time read (µs, ``None``: nothing yet) and whether it is caught up."""
        return {p: (t, p in self._caught_up) for p, t in self._latest.items()}
