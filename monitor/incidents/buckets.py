"""Per-key bucket counts for storm control: each scope's keys, their transactions and failures per bucket.

The rows on time of batch frames wait as they are (a projection of a few columns, no
copy: :meth:`BucketCounts.add`) until their bucket closes; :meth:`BucketCounts.take_due`
then aggregates each row once, with the others of the buckets closed, with polars, for
every scope and key: every scope's key of a row in one wide projection turned long,
one group-by per ``(scope, key, bucket)`` for the transactions and the *outage
failures* (the rules' ``outcome_classes``), one more over the failing rows (a few
percent, unless an outage) for the failures' earliest and latest times, cards,
terminals, merchant and region. It gives one :data:`BucketRow` per key and bucket, in
the order :class:`~monitor.incidents.detector.IncidentDetector` judges them (bucket,
scope broadest first, key), for the keys the detector follows or failing in those
buckets. When many rows wait before a bucket closes (small live batches, a
watermark held back) they are aggregated ahead (:data:`_COMPACT_ROWS`) and merged at
the close. Events of a bucket already judged are late: counted
(:attr:`BucketCounts.late_events`), left out.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from monitor.frames import collect_all
from monitor.incidents.rules import FLEET, IncidentRules, Scope

__all__ = ["EPOCH", "KEY_COLUMNS", "BucketCounts", "BucketRow", "bucket_column", "bucket_of", "micros",
           "rows_by_bucket", "scope_key"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: One key's closed bucket: (scope, key, transactions, failures, earliest failure time,
#: latest failure time, failing card refs, failing terminal IDs, merchant, region).
BucketRow = tuple[Scope, str, int, int, datetime | None, datetime | None, list[str], list[str],
                  str | None, str | None]
#: The columns the scope keys are read from.
KEY_COLUMNS: Final = ("terminal_id", "merchant_id", "region", "pan_masked")
#: Rows kept unaggregated at most (then aggregated ahead of their bucket's close): the
#: waiting rows hold their batch frames' columns, ~0.5 KiB a row, so ~10 MiB at most;
#: one aggregation costs a few ms whatever the rows.
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
        # Rows on time not aggregated yet: lazy projections of the batch frames
        # (occurred_at, outcome, card_ref and the key columns; nothing computed), how
        # many, and the latest bucket among them.
        self._raw: list[pl.LazyFrame] = []
        self._raw_rows = 0
        self._raw_latest: int | None = None
        # The earliest bucket among the waiting rows (a lower bound: rows of a batch
        # with late ones count from the bucket after the judged ones), None without
        # any: a bucket closing before it finds nothing of theirs due (no polars call).
        self._raw_earliest: int | None = None
        # Aggregates of rows compacted before their bucket closed (see _compact): per
        # (scope, key, bucket) the transactions and failures of every key, and the
        # failing keys' details (:data:`_FAILING_AGGREGATES`); ``scope`` is a text tag,
        # the scope's place in the rules' order ("0": broadest).
        self._pending: list[pl.DataFrame] = []
        self._pending_failing: list[pl.DataFrame] = []
        # The earliest bucket in ``_pending`` (None: nothing pending), as ``_raw_earliest``.
        self._pending_earliest: int | None = None
        #: Latest event time seen (µs since the epoch; the watermark when none is given).
        self.latest_us: int | None = None
        #: Events that arrived for a bucket already judged (left out).
        self.late_events = 0

    def add(self, frame: pl.DataFrame, closed: int | None) -> None:
        """Take a classified batch frame (not empty); buckets up to ``closed`` are judged.

        Nothing is computed (no polars call but the times' minimum and maximum): its
        rows on time wait, as a lazy projection, until their bucket closes
        (:meth:`take_due` aggregates each row once, with the others of its bucket, in
        the batch's one polars call), or are aggregated ahead once :data:`_COMPACT_ROWS`
        of them wait (small live batches, a watermark held back).
        """
        at = frame.get_column("occurred_at")
        earliest, latest = at.min(), at.max()
        assert isinstance(earliest, datetime) and isinstance(latest, datetime)
        latest_us = micros(latest)
        self.latest_us = latest_us if self.latest_us is None else max(self.latest_us, latest_us)
        size = self.rules.bucket_seconds
        rows = frame.height
        first = micros(earliest) // (size * _US)
        if closed is not None and first <= closed:  # some are late
            first = closed + 1  # the on-time rows' earliest bucket is at least this one
            on_time = bucket_column(at, size) > closed
            rows = int(on_time.sum())
            self.late_events += frame.height - rows
            frame = frame.filter(on_time)
        if rows == 0:
            return
        self._raw.append(frame.lazy().select("occurred_at", "outcome", "card_ref", *KEY_COLUMNS))
        self._raw_rows += rows
        last = latest_us // (size * _US)
        self._raw_latest = last if self._raw_latest is None else max(self._raw_latest, last)
        self._raw_earliest = first if self._raw_earliest is None else min(self._raw_earliest, first)
        if self._raw_rows >= _COMPACT_ROWS:
            self._compact()

    def _aggregate(self, rows: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
        """Plans of ``rows``' aggregates per (scope, key, bucket): counts, failing details.

        Every scope's key of each row in one wide projection, turned long (one row per
        scope with a key: null keys are left out); the two group-bys share it.

        Returns:
            ``(counts, failing)``: ``scope`` (text tag, see ``_pending``), ``key``,
            ``bucket`` and ``transactions``, ``failures``; or the columns of
            :data:`_FAILING_AGGREGATES`.
        """
        places = self._places
        long = (rows.select(
            bucket_column(pl.col("occurred_at"), self.rules.bucket_seconds).alias("bucket"),
            pl.col("outcome").is_in(self.rules.outcome_classes).alias("failed"),
            *_FAILING_DETAIL,
            *[scope_key(scope).alias(place) for place, scope in zip(places, self._scopes, strict=True)])
            .unpivot(on=places, index=["bucket", "failed", *_FAILING_DETAIL],
                     variable_name="scope", value_name="key")
            .drop_nulls("key"))
        keys = ("scope", "key", "bucket")
        counts = long.group_by(*keys).agg(pl.len().cast(pl.Int64).alias("transactions"),
                                          pl.col("failed").sum().cast(pl.Int64).alias("failures"))
        failing = long.filter(pl.col("failed")).group_by(*keys).agg(*_FAILING_AGGREGATES)
        return counts, failing

    def _compact(self) -> None:
        """Aggregate the rows waiting in ``_raw`` (one ``collect_all``) into ``_pending``."""
        if not self._raw:
            return
        rows = pl.concat(self._raw, how="vertical")
        earliest = self._raw_earliest
        self._raw, self._raw_rows, self._raw_latest, self._raw_earliest = [], 0, None, None
        counts, failing = collect_all(self._aggregate(rows))
        self._pending.append(counts)
        self._pending_failing.append(failing)
        if earliest is not None:
            self._pending_earliest = earliest if self._pending_earliest is None \
                else min(self._pending_earliest, earliest)

    def _due(self, closed: int, also: pl.LazyFrame | None
             ) -> tuple[pl.DataFrame | None, pl.DataFrame | None, pl.DataFrame | None]:
        """Take the buckets up to ``closed``: their counts and failing aggregates, in one polars call.

        The raw rows of those buckets are aggregated (merged with what was compacted
        of them before, if anything) in one ``collect_all`` that also keeps the raw
        rows of later buckets waiting, and collects ``also``.

        Returns:
            ``(counts, failing, also)``: the counts sorted by bucket, scope, key, and the
            failing aggregates (:data:`_FAILING_AGGREGATES`; no particular order), both
            ``None`` when nothing of those buckets waits; ``also`` collected, or ``None``.
        """
        keys = ("scope", "key", "bucket")
        plans: list[pl.LazyFrame] = []
        counts_parts: list[pl.LazyFrame] = []
        failing_parts: list[pl.LazyFrame] = []
        later: pl.LazyFrame | None = None
        # Rows waiting whose earliest bucket is after ``closed`` all stay waiting, untouched.
        if self._raw and self._raw_earliest is not None and self._raw_earliest <= closed:
            rows = pl.concat(self._raw, how="vertical")
            bucket = bucket_column(pl.col("occurred_at"), self.rules.bucket_seconds)
            if self._raw_latest is not None and self._raw_latest > closed:  # some stay waiting
                later = rows.filter(bucket > closed)
                rows = rows.filter(bucket <= closed)
            self._raw, self._raw_rows, self._raw_latest, self._raw_earliest = [], 0, None, None
            counts, failing = self._aggregate(rows)
            counts_parts.append(counts)
            failing_parts.append(failing)
        compacted = False
        if self._pending and self._pending_earliest is not None and self._pending_earliest <= closed:
            counts, failing = pl.concat(self._pending), pl.concat(self._pending_failing)
            ripe = counts.get_column("bucket") <= closed
            ripe_failing = failing.get_column("bucket") <= closed
            self._pending, self._pending_failing = [counts.filter(~ripe)], [failing.filter(~ripe_failing)]
            left = self._pending[0].get_column("bucket").min()
            self._pending_earliest = None if left is None else int(left)  # type: ignore[arg-type]
            if ripe.any():
                compacted = True
                counts_parts.append(counts.filter(ripe).lazy())
                failing_parts.append(failing.filter(ripe_failing).lazy())
        if counts_parts:
            if compacted:  # merge the aggregates of each compaction and of the rows just aggregated
                counts_plan = pl.concat(counts_parts).group_by(*keys).agg(
                    pl.col("transactions").sum(), pl.col("failures").sum())
                failing_plan = pl.concat(failing_parts).group_by(*keys).agg(
                    pl.col("first").min(), pl.col("last").max(),
                    pl.col("cards").explode().drop_nulls().unique().sort(),
                    pl.col("terminals").explode().drop_nulls().unique().sort(),
                    pl.col("merchant").min(), pl.col("region").min())
            else:
                counts_plan, failing_plan = counts_parts[0], failing_parts[0]
            plans += [counts_plan.sort("bucket", "scope", "key"), failing_plan]
        if later is not None:
            plans.append(later)
        if also is not None:
            plans.append(also)
        if not plans:
            return None, None, None
        results = collect_all(plans)
        if later is not None:
            waiting = results[2 if counts_parts else 0]
            if waiting.height:
                self._raw, self._raw_rows = [waiting.lazy()], waiting.height
                at = waiting.get_column("occurred_at")
                size_us = self.rules.bucket_seconds * _US
                self._raw_latest = micros(at.max()) // size_us  # type: ignore[arg-type]
                self._raw_earliest = micros(at.min()) // size_us  # type: ignore[arg-type]
        if not counts_parts:
            return None, None, results[-1] if also is not None else None
        return results[0], results[1], results[-1] if also is not None else None

    def take_due(self, closed: int, followed: Mapping[Scope, Container[str]], *,
                 also: pl.LazyFrame | None = None) -> tuple[dict[int, list[BucketRow]], pl.DataFrame | None]:
        """The rows of the buckets up to ``closed``, merged, by bucket, in judging order.

        Args:
            closed: the last closed bucket; later ones stay pending.
            followed: each scope's keys the detector follows already (a bucket without
                failures is kept only for those and for keys failing in these buckets).
            also: another plan of the batch to collect in the same polars call (each
                call releases and takes back the GIL: one per batch is cheapest).

        Returns:
            ``({bucket: [BucketRow, ...]}, also)``: the rows as :func:`rows_by_bucket`
            gives them (bucket, scope broadest first, key), and ``also`` collected
            (``None`` without it).
        """
        counts, failing, extra = self._due(closed, also)
        if counts is None or failing is None or counts.height == 0:
            return {}, extra
        scopes = dict(zip(self._places, self._scopes, strict=True))
        detail = {(place, k, b): rest for place, k, b, *rest in failing.iter_rows()}
        # <scope tag: the keys whose rows count: followed, or failing in these buckets>
        wanted = {place: set(followed[scope]) for place, scope in scopes.items()}
        for place, key, _ in detail:
            wanted[place].add(key)
        by_bucket: dict[int, list[BucketRow]] = {}
        columns = (counts.get_column(name).to_list()
                   for name in ("scope", "key", "bucket", "transactions", "failures"))
        for place, key, b, volume, failures in zip(*columns, strict=True):
            if key not in wanted[place]:
                continue
            scope = scopes[place]
            found = detail.get((place, key, b)) if failures else None
            row: BucketRow
            if found is None:
                row = (scope, key, volume, failures, None, None, [], [], None, None)
            else:
                first, last, cards, terminals, merchant, region = found
                row = (scope, key, volume, failures, first, last, cards, terminals, merchant, region)
            by_bucket.setdefault(b, []).append(row)
        return by_bucket, extra

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
        counts, failing, _ = self._due(closed, None)
        if counts is None or failing is None:
            return (pl.DataFrame(schema={"scope": pl.String, "key": pl.String, "bucket": pl.Int64,
                                         "transactions": pl.Int64, "failures": pl.Int64}),
                    pl.DataFrame(schema={"scope": pl.String, "key": pl.String, "bucket": pl.Int64}))
        names = pl.col("scope").replace_strict(dict(zip(self._places, self._scopes, strict=True)),
                                               return_dtype=pl.String)
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
