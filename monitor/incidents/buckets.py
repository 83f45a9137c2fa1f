"""Per-key bucket counts for storm control: each scope's keys, their transactions and failures per bucket.

The rows on time of batch frames wait (a few columns, :meth:`BucketCounts.add`) and
are aggregated together, with polars, for every scope and key when a bucket closes or
enough of them wait: per ``(scope, key, bucket)`` the transactions and the
*outage failures* (the rules' ``outcome_classes``), and for the failing ones (a few
percent of the rows) the failures' earliest and latest times, cards, terminals,
merchant and region. The aggregates wait until their bucket is closed;
:meth:`BucketCounts.take_due` then merges them into one :data:`BucketRow` per key and
bucket, in the order :class:`~monitor.incidents.detector.IncidentDetector` judges
them (bucket, scope broadest first, key). Events of a bucket already judged are late:
counted (:attr:`BucketCounts.late_events`), left out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from monitor.incidents.rules import FLEET, IncidentRules, Scope

__all__ = ["EPOCH", "KEY_COLUMNS", "BucketCounts", "BucketRow", "bucket_of", "micros", "rows_by_bucket", "scope_key"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: One key's closed bucket: (scope, key, transactions, failures, earliest failure time,
#: latest failure time, failing card refs, failing terminal IDs, merchant, region).
BucketRow = tuple[Scope, str, int, int, datetime | None, datetime | None, list[str], list[str],
                  str | None, str | None]
#: The columns the scope keys are read from.
KEY_COLUMNS: Final = ("terminal_id", "merchant_id", "region", "pan_masked")
#: Rows kept unaggregated at most (then aggregated at once): 20,000 rows of eight
#: columns are a few MiB; one aggregation costs ~2-3 ms whatever the rows.
_COMPACT_ROWS: Final = 20_000
# The issuer of a card is its IIN: the first six digits of the (masked) PAN, ISO/IEC 7812-1.
_IIN: Final = r"^[0-9]{6}"


def rows_by_bucket(counts: pl.DataFrame, failing: pl.DataFrame, followed: list[tuple[str, str]],
                   rank: dict[str, int]) -> dict[int, list[BucketRow]]:
    """The closed buckets' rows in judging order: bucket, scope broadest first, key.

    Args:
        counts: ``scope, key, bucket, transactions, failures`` rows, several per key and
            bucket allowed (batches, partitions): they are summed.
        failing: one row per failing key and bucket: ``scope, key, bucket, first, last,
            cards, terminals, merchant, region`` (UTC datetimes, sorted lists).
        followed: ``(scope, key)`` the detector follows.
        rank: each scope's place, broadest first.

    Returns:
        ``{bucket: [BucketRow, ...]}``; a bucket without failures only for a key that is
        followed or failing in these buckets (its bad ratio, its recovery).
    """
    keys = ["scope", "key", "bucket"]
    followed_keys = pl.concat([
        pl.DataFrame(followed, schema={"scope": pl.String, "key": pl.String}, orient="row"),
        failing.select("scope", "key"),
    ])
    merged = (counts.join(followed_keys, on=["scope", "key"], how="semi")
              .group_by(keys).agg(pl.col("transactions").sum(), pl.col("failures").sum())
              .join(failing, on=keys, how="left")
              .with_columns(pl.col("scope").replace_strict(rank, return_dtype=pl.Int32).alias("rank"))
              .sort("bucket", "rank", "key"))
    by_bucket: dict[int, list[BucketRow]] = {}
    for scope, key, b, volume, failures, first, last, cards, terminals, merchant, region, _ in (
            merged.iter_rows()):
        by_bucket.setdefault(b, []).append(
            (scope, key, volume, failures, first, last, cards or [], terminals or [], merchant, region))
    return by_bucket


def scope_key(scope: Scope) -> pl.Expr:
    """The key of ``scope`` of each row (``null``: the row has none, e.g. no region)."""
    match scope:
        case "network":
            return pl.lit(FLEET, dtype=pl.String)
        case "terminal":
            return pl.col("terminal_id")
        case "merchant":
            return pl.col("merchant_id")
        case "region":
            return pl.col("region")
        case "issuer":
            return pl.col("pan_masked").str.extract(f"({_IIN})", 1)


def micros(at: datetime) -> int:
    """``at`` (aware) in µs since the epoch."""
    return (at - EPOCH) // timedelta(microseconds=1)


def bucket_of(at: datetime, size: int) -> int:
    """The index of the ``size``-second bucket (since the epoch) that holds ``at``."""
    return int((at - EPOCH).total_seconds()) // size


class BucketCounts:
    """The aggregates of buckets not judged yet, for every scope (see the module docstring).

    Args:
        rules: the ``incidents:`` rules (bucket size, outcome classes, scopes).
    """

    def __init__(self, rules: IncidentRules) -> None:
        self.rules = rules
        # Per-batch aggregates of buckets not closed yet: <(scope, key, bucket): transactions,
        # failures> for every key, and the failing ones' times, cards, terminals, places.
        self._pending: list[pl.DataFrame] = []
        self._pending_failing: list[pl.DataFrame] = []
        # Rows on time not aggregated yet (bucket, failed, occurred_at, card_ref and the
        # key columns), and how many.
        self._raw: list[pl.DataFrame] = []
        self._raw_rows = 0
        #: Latest event time seen (µs since the epoch; the watermark when none is given).
        self.latest_us: int | None = None
        #: Events that arrived for a bucket already judged (left out).
        self.late_events = 0

    def add(self, frame: pl.DataFrame, closed: int | None) -> None:
        """Take a classified batch frame (not empty); buckets up to ``closed`` are judged.

        Its rows on time are kept as they are (a few columns) and aggregated together,
        once :data:`_COMPACT_ROWS` of them wait or a bucket closes (:meth:`take_due`):
        small live batches do not each pay a whole aggregation.
        """
        size = self.rules.bucket_seconds
        latest = frame.get_column("occurred_at").max()
        assert isinstance(latest, datetime)
        latest_us = micros(latest)
        self.latest_us = latest_us if self.latest_us is None else max(self.latest_us, latest_us)
        base = frame.select(
            (pl.col("occurred_at").dt.epoch("s") // size).cast(pl.Int64).alias("bucket"),
            pl.col("outcome").is_in(self.rules.outcome_classes).alias("failed"),
            "occurred_at", "card_ref", *KEY_COLUMNS)
        if closed is not None:
            on_time = base.get_column("bucket") > closed
            late = base.height - int(on_time.sum())
            if late:
                self.late_events += late
                base = base.filter(on_time)
        self._raw.append(base)
        self._raw_rows += base.height
        if self._raw_rows >= _COMPACT_ROWS:
            self._compact()

    def _compact(self) -> None:
        """Aggregate the rows waiting in ``_raw`` into ``_pending`` and ``_pending_failing``."""
        if not self._raw:
            return
        base = pl.concat(self._raw, rechunk=False).lazy()
        self._raw, self._raw_rows = [], 0
        failed = pl.col("failed")
        # One long frame for every scope: (scope, key, bucket) → transactions and failures
        # for every key; the failures' times, cards, terminals, merchant and region for
        # the failing ones only (a few percent of the rows).
        scopes = self.rules.ordered_scopes
        every = pl.concat([base.select(pl.lit(scope).alias("scope"), scope_key(scope).alias("key"),
                                       "bucket", "failed") for scope in scopes]).drop_nulls("key")
        failures = base.filter(failed)
        failing_long = pl.concat([failures.select(pl.lit(scope).alias("scope"), scope_key(scope).alias("key"),
                                                  pl.all()) for scope in scopes]).drop_nulls("key")
        counts, failing = pl.collect_all([
            every.group_by("scope", "key", "bucket").agg(
                pl.len().cast(pl.Int64).alias("transactions"), failed.sum().cast(pl.Int64).alias("failures")),
            failing_long.group_by("scope", "key", "bucket").agg(
                pl.col("occurred_at").min().alias("first"), pl.col("occurred_at").max().alias("last"),
                pl.col("card_ref").drop_nulls().unique().alias("cards"),
                pl.col("terminal_id").unique().alias("terminals"),
                pl.col("merchant_id").min().alias("merchant"), pl.col("region").min().alias("region")),
        ])
        self._pending.append(counts)
        self._pending_failing.append(failing)

    def take_due(self, closed: int, followed: list[tuple[Scope, str]],
                 rank: dict[Scope, int]) -> dict[int, list[BucketRow]]:
        """The rows of the buckets up to ``closed``, merged, by bucket, in judging order.

        Args:
            closed: the last closed bucket; later ones stay pending.
            followed: ``(scope, key)`` of the keys the detector follows already.
            rank: each scope's place, broadest first.
        """
        self._compact()
        if not self._pending:
            return {}
        due_bucket = pl.col("bucket") <= closed
        counts = pl.concat(self._pending)
        failing = pl.concat(self._pending_failing)
        self._pending = [counts.filter(~due_bucket)]
        self._pending_failing = [failing.filter(~due_bucket)]
        counts, failing = counts.filter(due_bucket), failing.filter(due_bucket)
        if counts.height == 0:
            return {}
        keys = ["scope", "key", "bucket"]
        failing = failing.group_by(keys).agg(
            pl.col("first").min(), pl.col("last").max(),
            pl.col("cards").explode().drop_nulls().unique().sort(),
            pl.col("terminals").explode().drop_nulls().unique().sort(),
            pl.col("merchant").min(), pl.col("region").min(),
        )
        return rows_by_bucket(counts, failing, followed, rank)

    def take_partials(self, closed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The aggregates of the buckets up to ``closed``, merged per key and bucket, for every key.

        For the partial counts of one partition that several instances combine
        (:mod:`monitor.pipeline.fleet`); later buckets stay pending.

        Returns:
            ``(counts, failing)``: ``counts`` has ``scope``, ``key``, ``bucket``,
            ``transactions``, ``failures`` for every key; ``failing`` has ``scope``,
            ``key``, ``bucket``, ``first``, ``last`` (UTC), ``cards``, ``terminals``
            (sorted lists), ``merchant``, ``region`` for the keys with failures.
        """
        keys = ["scope", "key", "bucket"]
        self._compact()
        if not self._pending:
            return (pl.DataFrame(schema={"scope": pl.String, "key": pl.String, "bucket": pl.Int64,
                                         "transactions": pl.Int64, "failures": pl.Int64}),
                    pl.DataFrame(schema={"scope": pl.String, "key": pl.String, "bucket": pl.Int64}))
        due_bucket = pl.col("bucket") <= closed
        counts = pl.concat(self._pending)
        failing = pl.concat(self._pending_failing)
        self._pending = [counts.filter(~due_bucket)]
        self._pending_failing = [failing.filter(~due_bucket)]
        counts = counts.filter(due_bucket).group_by(keys).agg(
            pl.col("transactions").sum(), pl.col("failures").sum())
        failing = failing.filter(due_bucket).group_by(keys).agg(
            pl.col("first").min(), pl.col("last").max(),
            pl.col("cards").explode().drop_nulls().unique().sort(),
            pl.col("terminals").explode().drop_nulls().unique().sort(),
            pl.col("merchant").min(), pl.col("region").min(),
        )
        return counts, failing
