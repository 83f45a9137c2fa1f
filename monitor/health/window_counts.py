"""One sliding window's storage: counts per (terminal, bucket of event time), merged and pruned.

One polars frame per window: ``terminal_id``, ``bucket`` (the bucket's index since the
epoch, Int32 for buckets of 2 s or more) and the counts, one row per pair. Per-batch
aggregates wait in a list and are merged into it once they hold
:data:`MAX_PENDING_ROWS` rows (or when the window is read); the merge prunes the
buckets a window ending at the watermark can no longer reach. Counts are stored as
UInt16 (half the memory of a fleet's window frames) while every (terminal, bucket)
count fits, i.e. no terminal made more than 65,535 transactions in one bucket (218 per
second in a 5-minute bucket); a frame that holds a larger count keeps UInt32 counts,
exact, until that bucket is pruned. Sums over a window are UInt32 either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl

__all__ = ["MAX_PENDING_ROWS", "WindowCounts"]

#: Batch aggregates are merged into a window frame once they hold this many rows (or at
#: :meth:`~monitor.health.windows.TerminalWindows.stats`): rare enough to keep merges
#: cheap, small enough that a merge of 100,000 terminals does not double the memory
#: (≈ 110 bytes per pending row).
MAX_PENDING_ROWS: Final = 200_000
#: Largest per-bucket count stored as UInt16; every count of a row is at most its
#: ``transactions``, so that column decides.
_NARROW_MAX: Final = 65_535
_US: Final = 1_000_000


class WindowCounts:
    """The counts of one window (see the module docstring).

    Args:
        bucket_seconds: the window's bucket width.
        buckets: how many buckets the window spans.
        schema: ``terminal_id``, ``bucket`` and the count columns as UInt32 (the shape of
            a batch aggregate).
        counts: the names of the count columns.
    """

    def __init__(self, *, bucket_seconds: int, buckets: int,
                 schema: Mapping[str, pl.DataType | type[pl.DataType]],
                 counts: tuple[str, ...]) -> None:
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self._schema = schema
        self._counts = counts
        #: <(terminal_id, bucket): counts>, one row per pair.
        self.frame = pl.DataFrame(schema={**schema, **dict.fromkeys(counts, pl.UInt16())})
        #: Per-batch aggregates not merged yet, of the shape ``schema``.
        self.pending: list[pl.DataFrame] = []

    def first_bucket(self, watermark_us: int) -> int:
        """Oldest bucket that a window ending at ``watermark_us`` can reach."""
        return watermark_us // (self.bucket_seconds * _US) - self.buckets + 1

    def add(self, aggregate: pl.DataFrame, watermark_us: int) -> None:
        """Keep one batch's aggregate; merge once :data:`MAX_PENDING_ROWS` rows wait."""
        self.pending.append(aggregate)
        if sum(p.height for p in self.pending) >= MAX_PENDING_ROWS:
            self.compact(watermark_us)

    def compact(self, watermark_us: int | None) -> None:
        """Merge the pending batch aggregates into the window frame and prune old buckets."""
        if self.pending:
            pending = pl.concat(self.pending)
            self.pending = []
            lowest = pending.get_column("bucket").min()
            frame = self.frame
            recent = frame.filter(pl.col("bucket") >= lowest)
            merged = (pl.concat([recent, pending], how="vertical_relaxed").group_by("terminal_id", "bucket")
                      .agg(pl.col(list(self._counts)).cast(pl.UInt32).sum()).select(list(self._schema)))
            self.frame = pl.concat([frame.filter(pl.col("bucket") < lowest), self._narrow(merged)],
                                   how="vertical_relaxed")
        if watermark_us is not None:
            self.frame = self.frame.filter(pl.col("bucket") >= self.first_bucket(watermark_us))
        if self.frame.schema["transactions"] != pl.UInt16:  # a large count was pruned since?
            self.frame = self._narrow(self.frame)

    def _narrow(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with UInt16 counts when every count fits (unchanged otherwise)."""
        largest = frame.get_column("transactions").max()
        if isinstance(largest, int) and largest > _NARROW_MAX:
            return frame
        return frame.with_columns(pl.col(list(self._counts)).cast(pl.UInt16))

    def forget(self, gone: pl.DataFrame, watermark_us: int | None) -> None:
        """Drop the rows of the terminals in ``gone`` (a ``terminal_id`` column), after a merge."""
        self.compact(watermark_us)
        self.frame = self.frame.join(gone, on="terminal_id", how="anti", maintain_order="left")

    def estimated_size(self) -> int:
        """Bytes held by the frame and the pending aggregates (polars' estimate)."""
        return int(self.frame.estimated_size() + sum(p.estimated_size() for p in self.pending))
