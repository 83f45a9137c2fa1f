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

from collections.abc import Container, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from monitor.incidents.rules import FLEET, IncidentRules, Scope

__all__ = ["EPOCH", "KEY_COLUMNS", "BucketCounts", "BucketRow", "bucket_column", "bucket_of", "micros", "rows_by_bucket", "scope_key"]

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
_US: Final = 1_000_000


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


def bucket_column(at: pl.Expr | pl.Series, size: int) -> pl.Expr | pl.Series:
    """The ``size``-second bucket index (since the epoch) of each time of ``at``."""
    return at.dt.epoch("us") // (size * _US)


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
        self._scopes = rules.ordered_scopes
        self._places = [str(place) for place in range(len(self._scopes))]  # scope tags, broadest first
        # Rows on time not aggregated yet: plain projections of the batch frames
        # (occurred_at, outcome, card_ref and the key columns), and how many.
        self._raw: list[pl.DataFrame] = []
        self._raw_rows = 0
        # Aggregates of rows compacted before their bucket closed (see _compact): per
        # (scope, key, bucket) the transactions and failures of every key, and the
        # failing keys' details (:data:`_FAILING_AGGREGATES`); scope is a text tag, the
        # scope's place in the rules' order (broadest first).
        self._pending: list[pl.DataFrame] = []
        self._pending_failing: list[pl.DataFrame] = []
        #: Latest event time seen (µs since the epoch; the watermark when none is given).
        self.latest_us: int | None = None
        #: Events that arrived for a bucket already judged (left out).
        self.late_events = 0

    def add(self, frame: pl.DataFrame, closed: int | None) -> None:
        """Take a classified batch frame (not empty); buckets up to ``closed`` are judged.

        Its rows on time are kept as they are (a projection of a few columns, no copy)
        until their bucket closes (:meth:`take_due`: each row is aggregated once, with
        the others of its bucket, in one polars plan), or aggregated ahead once
        :data:`_COMPACT_ROWS` of them wait (small live batches, a watermark held back).
        """
        at = frame.get_column("occurred_at")
        earliest, latest = at.min(), at.max()
        assert isinstance(earliest, datetime) and isinstance(latest, datetime)
        latest_us = micros(latest)
        self.latest_us = latest_us if self.latest_us is None else max(self.latest_us, latest_us)
        base = frame.select("occurred_at", "outcome", "card_ref", *KEY_COLUMNS)
        size = self.rules.bucket_seconds
        if closed is not None and micros(earliest) // (size * _US) <= closed:  # some are late
            on_time = bucket_column(at, size) > closed
            self.late_events += base.height - int(on_time.sum())
            base = base.filter(on_time)
        if base.height == 0:
            return
        self._raw.append(base)
        self._raw_rows += base.height
        if self._raw_rows >= _COMPACT_ROWS:
            self._compact()

    def _aggregate(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``rows``' aggregates per (scope, key, bucket): the counts, and the failing keys' details.

        Every scope's key of each row in one wide projection, turned long (one row per
        scope with a key: null keys are left out) and grouped; the failing rows (a few
        percent, unless an outage) the same way. Eager steps: on small frames each
        costs less than a lazy plan's optimisation (measured, polars 2.1).

        Returns:
            ``(counts, failing)``: ``scope`` (the scope's place in the rules' order, as
            text: ``"0"`` broadest), ``key``, ``bucket`` and ``transactions``,
            ``failures``; or the columns of :data:`_FAILING_AGGREGATES`.
        """
        places = self._places
        wide = rows.select(
            bucket_column(pl.col("occurred_at"), self.rules.bucket_seconds).alias("bucket"),
            pl.col("outcome").is_in(self.rules.outcome_classes).alias("failed"),
            *_FAILING_DETAIL,
            *[scope_key(scope).alias(place) for place, scope in zip(places, self._scopes, strict=True)])
        keys = ("scope", "key", "bucket")
        counts = (wide.select("bucket", "failed", *places)
                  .unpivot(on=places, index=["bucket", "failed"], variable_name="scope", value_name="key")
                  .drop_nulls("key")
                  .group_by(*keys).agg(pl.len().cast(pl.Int64).alias("transactions"),
                                       pl.col("failed").sum().cast(pl.Int64).alias("failures")))
        failed = wide.filter(pl.col("failed"))
        if failed.height == 0:
            at = wide.schema["occurred_at"]
            return counts, pl.DataFrame(schema={
                "scope": pl.String, "key": pl.String, "bucket": pl.Int64, "first": at, "last": at,
                "cards": pl.List(pl.String), "terminals": pl.List(pl.String),
                "merchant": pl.String, "region": pl.String})
        failing = (failed.unpivot(on=places, index=["bucket", *_FAILING_DETAIL],
                                  variable_name="scope", value_name="key")
                   .drop_nulls("key")
                   .group_by(*keys).agg(*_FAILING_AGGREGATES))
        return counts, failing

    def _compact(self) -> None:
        """Aggregate the rows waiting in ``_raw`` into ``_pending``."""
        if not self._raw:
            return
        rows = pl.concat(self._raw, how="vertical", rechunk=False)
        self._raw, self._raw_rows = [], 0
        counts, failing = self._aggregate(rows)
        self._pending.append(counts)
        self._pending_failing.append(failing)

    def _due(self, closed: int) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        """Take the buckets up to ``closed``: their counts and failing aggregates.

        The raw rows of those buckets are aggregated once, merged with what was
        compacted of them before (if anything); the rows and aggregates of later
        buckets stay waiting. ``None`` when nothing of those buckets waits.

        Returns:
            ``(counts, failing)``: the counts sorted by bucket, scope, key; the failing
            aggregates (:data:`_FAILING_AGGREGATES`) in no particular order.
        """
        size = self.rules.bucket_seconds
        due: pl.DataFrame | None = None
        if self._raw:
            rows = pl.concat(self._raw, how="vertical", rechunk=False)
            at = rows.get_column("occurred_at")
            latest = at.max()
            assert isinstance(latest, datetime)
            if micros(latest) // (size * _US) <= closed:
                due, self._raw, self._raw_rows = rows, [], 0
            else:
                mask = bucket_column(at, size) <= closed
                due, later = rows.filter(mask), rows.filter(~mask)
                self._raw, self._raw_rows = [later], later.height
        counts_parts: list[pl.DataFrame] = []
        failing_parts: list[pl.DataFrame] = []
        if self._pending:
            counts, failing = pl.concat(self._pending), pl.concat(self._pending_failing)
            ripe = counts.get_column("bucket") <= closed
            ripe_failing = failing.get_column("bucket") <= closed
            self._pending, self._pending_failing = [counts.filter(~ripe)], [failing.filter(~ripe_failing)]
            if ripe.any():
                counts_parts.append(counts.filter(ripe))
                failing_parts.append(failing.filter(ripe_failing))
        if due is not None and due.height == 0:
            due = None
        if due is not None:
            counts, failing = self._aggregate(due)
            counts_parts.append(counts)
            failing_parts.append(failing)
        if not counts_parts:
            return None
        keys = ("scope", "key", "bucket")
        if due is not None and len(counts_parts) == 1:  # nothing compacted: one aggregate per key
            counts, failing = counts_parts[0], failing_parts[0]
        else:  # merge the aggregates of each compaction and of the rows just aggregated
            counts = pl.concat(counts_parts).group_by(*keys).agg(
                pl.col("transactions").sum(), pl.col("failures").sum())
            failing = pl.concat(failing_parts).group_by(*keys).agg(
                pl.col("first").min(), pl.col("last").max(),
                pl.col("cards").explode().drop_nulls().unique().sort(),
                pl.col("terminals").explode().drop_nulls().unique().sort(),
                pl.col("merchant").min(), pl.col("region").min())
        return counts.sort("bucket", "scope", "key"), failing

    def take_due(self, closed: int, followed: Mapping[Scope, Container[str]]) -> dict[int, list[BucketRow]]:
        """The rows of the buckets up to ``closed``, merged, by bucket, in judging order.

        Args:
            closed: the last closed bucket; later ones stay pending.
            followed: each scope's keys the detector follows already (a bucket without
                failures is kept only for those and for keys failing in these buckets).

        Returns:
            ``{bucket: [BucketRow, ...]}`` as :func:`rows_by_bucket` gives them (bucket,
            scope broadest first, key).
        """
        split = self._due(closed)
        if split is None or split[0].height == 0:
            return {}
        counts, failing = split
        scopes = dict(zip(self._places, self._scopes, strict=True))
        detail = {(scopes[s], k, b): rest for s, k, b, *rest in failing.iter_rows()}
        failing_keys = {(scope, key) for scope, key, _ in detail}
        by_bucket: dict[int, list[BucketRow]] = {}
        columns = (counts.get_column(name).to_list()
                   for name in ("scope", "key", "bucket", "transactions", "failures"))
        for place, key, b, volume, failures in zip(*columns, strict=True):
            scope = scopes[place]
            if key not in followed[scope] and (scope, key) not in failing_keys:
                continue
            found = detail.get((scope, key, b)) if failures else None
            row: BucketRow
            if found is None:
                row = (scope, key, volume, failures, None, None, [], [], None, None)
            else:
                first, last, cards, terminals, merchant, region = found
                row = (scope, key, volume, failures, first, last, cards, terminals, merchant, region)
            by_bucket.setdefault(b, []).append(row)
        return by_bucket

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
        split = self._due(closed)
        if split is None:
            return (pl.DataFrame(schema={"scope": pl.String, "key": pl.String, "bucket": pl.Int64,
                                         "transactions": pl.Int64, "failures": pl.Int64}),
                    pl.DataFrame(schema={"scope": pl.String, "key": pl.String, "bucket": pl.Int64}))
        names = pl.col("scope").replace_strict(dict(zip(self._places, self._scopes, strict=True)), return_dtype=pl.String)
        counts, failing = split
        return counts.with_columns(names), failing.with_columns(names)


#: The failing rows' columns kept for the failures' details, and their aggregates per
#: key and bucket (the columns of :data:`BucketRow` after the failures).
_FAILING_DETAIL: Final = ("occurred_at", "card_ref", "terminal_id", "merchant_id", "region")
_FAILING_AGGREGATES: Final = [
    pl.col("occurred_at").min().alias("first"), pl.col("occurred_at").max().alias("last"),
    pl.col("card_ref").drop_nulls().unique().sort().alias("cards"),
    pl.col("terminal_id").drop_nulls().unique().sort().alias("terminals"),
    pl.col("merchant_id").min().alias("merchant"), pl.col("region").min().alias("region"),
]
