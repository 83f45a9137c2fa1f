"""Fleet-scope incidents with several instances in one consumer group: shared counts, one judge.

With one instance, :class:`~monitor.incidents.IncidentDetector` sees every partition.
With several, each reads a share of the partitions: a terminal's events (key =
terminal ID) all reach one instance, but a network, an issuer, a region or a
merchant is split between them. :class:`FleetIncidents` takes the detector's place
in the :class:`~monitor.pipeline.processor.BatchProcessor` when ``alerting.scale_out``
is on (PostgreSQL store only) and makes N instances judge as one:

1. **Partials, per partition.** Each batch's events on time are aggregated per
   partition the instance reads (:class:`~monitor.incidents.buckets.BucketCounts`, one
   per partition); the batch's VIP failures of outage classes are kept per partition.
2. **Written once, when the partition has passed the bucket.** A partition has
   passed bucket ``b`` when its own watermark — its latest event time minus the allowed
   lateness, or, once it is read to its end (caught up), the latest event time of
   *any* partition of the topic minus the lateness (the rules of
   :mod:`monitor.pipeline.watermark`, over all partitions) — is at or after the
   bucket's end. Its partials and VIP failures of the passed buckets, with its
   progress, are written in one transaction, insert-if-absent
   (:meth:`~monitor.alerts.store.fleet_counts.FleetCounts.flush`): a replay after a
   crash or a rebalance writes nothing twice. A batch's partials are written only
   after the consumer committed the batch (its VIP alerts are stored before the judge
   can attribute them): at the next batch or the next round of the background task.
3. **One judge.** Every ``interval_seconds`` (and when a batch wakes it) each instance
   asks for the judge's lease (:meth:`~monitor.alerts.store.fleet_counts.FleetCounts.claim`);
   the holder reads the partials of the buckets every partition has passed, merges
   them per key and bucket (sums, earliest/latest, unions) and judges them with the
   detector's own code (:meth:`~monitor.incidents.IncidentDetector.judge_merged`): the
   same buckets in the same order under the same rules as one instance. Its changes
   (with the VIP failures they take) are stored like a batch's
   (``record``); the store links each alert to its incident. The round's buckets
   count as judged only once its changes are stored: the same transaction moves the
   judged bucket, fenced by the lease (:meth:`~monitor.alerts.store.fleet_counts.FleetCounts.advance`).
   A judge that stops renewing its lease for ``lease_seconds`` is replaced by the
   next instance to ask, which starts from the store's open incidents
   (:meth:`~monitor.incidents.IncidentDetector.resume`), as after a restart, and
   judges the buckets whose changes were not stored; the old judge, finding its
   lease gone when it tries to store them, drops its changes.

Cost and limits: ``docs/scale-out.md``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Protocol

import polars as pl

from monitor.alerts.store.db import Database, is_transient
from monitor.alerts.store.fleet_counts import FleetCounts, LeaseLost, PartialRow, VipRow
from monitor.incidents.buckets import EPOCH, BucketCounts, BucketRow, rows_by_bucket, scope_key
from monitor.incidents.detector import IncidentDetector
from monitor.incidents.model import Incident, IncidentChange
from monitor.incidents.tracking import WaitingVip
from monitor.pipeline.watermark import EventClock

__all__ = ["PARTIAL_SCHEMA", "FleetIncidents", "FleetMetrics", "merge_partials"]

log = logging.getLogger(__name__)

_US: Final = 1_000_000
#: Longest pause between failing rounds (seconds): a store outage is retried at this
#: pace, not four times a second.
_RETRY_MAX_SECONDS: Final = 30.0
#: While rounds keep failing, one log line per this many seconds.
_LOG_EVERY_SECONDS: Final = 60.0
_KEYS: Final = ["scope", "key", "bucket"]
#: The columns of one partition's partial frame of a bucket (``first``/``last``: µs since the epoch).
PARTIAL_SCHEMA: Final = pl.Schema({
    "bucket": pl.Int64(), "scope": pl.String(), "key": pl.String(), "transactions": pl.Int64(),
    "failures": pl.Int64(), "first": pl.Int64(), "last": pl.Int64(), "cards": pl.List(pl.String()),
    "terminals": pl.List(pl.String()), "merchant": pl.String(), "region": pl.String(),
})


class FleetMetrics(Protocol):
    """What the judge reports (:class:`monitor.metrics.ScaleOutMetrics`); called from any thread."""

    def set_judging(self, judging: bool) -> None: ...
    def observe_judged_through(self, end_seconds: float) -> None: ...
    def observe_round_failed(self) -> None: ...


@dataclass(slots=True)
class _Staged:
    """One batch's events on time, waiting for the consumer to commit it."""

    marker: int  # batches the consumer had completed when it was processed
    frame: pl.DataFrame  # with a "partition" column
    vips: pl.DataFrame  # partition, event_id, bucket, at_us, k_<scope>...
    positions: dict[int, tuple[int | None, bool]]


@dataclass(frozen=True, slots=True)
class _Round:
    """One judged round waiting to be stored: its changes and the buckets it judged."""

    before: int | None  # ``judged_through`` when the round was claimed
    through: int  # the last bucket it judged
    changes: list[IncidentChange]


def merge_partials(partials: list[bytes], followed: list[tuple[str, str]],
                   rank: dict[str, int]) -> dict[int, list[BucketRow]]:
    """Every partition's partials merged per key and bucket, as one instance's ``take_due`` gives them.

    Args:
        partials: the partial frames of :meth:`FleetCounts.claim
            <monitor.alerts.store.fleet_counts.FleetCounts.claim>` (Arrow IPC, columns of
            :data:`PARTIAL_SCHEMA`).
        followed: ``(scope, key)`` the detector follows.
        rank: each scope's place, broadest first.

    Returns:
        ``{bucket: [BucketRow, ...]}``, in judging order (scope broadest first, then key);
        a bucket without failures only for a key followed or failing in these buckets.
    """
    if not partials:
        return {}
    frame = pl.concat([pl.read_ipc(io.BytesIO(data)) for data in partials])
    failing = frame.filter(pl.col("failures") > 0).group_by(_KEYS).agg(
        pl.col("first").min().cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.col("last").max().cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.col("cards").explode().drop_nulls().unique().sort(),
        pl.col("terminals").explode().drop_nulls().unique().sort(),
        pl.col("merchant").min(), pl.col("region").min(),
    )
    return rows_by_bucket(frame.select(*_KEYS, "transactions", "failures"), failing, followed, rank)


class FleetIncidents:
    """Storm control over every partition of the topic for N instances (see the module docstring).

    Takes the detector's place in the batch processor (:meth:`observe` has its
    signature and returns no changes: the judge's go to the store from :meth:`run`).

    Args:
        detector: this instance's detector; it judges only while this instance holds the lease.
        counts: the shared counts in the PostgreSQL store.
        clock: the instance's event clock (each partition's latest event time, caught up).
        owner: this instance's unique name (the lease holder's name).
        record: ``record(changes, fence)`` stores the judge's changes like a batch's
            (``AlertStore.record``), calling ``fence(db)`` first inside its transaction (``fence(None)`` runs
            it in a transaction of its own)
            (it raises :class:`~monitor.alerts.store.fleet_counts.LeaseLost`, rolling
            back, when this instance is no longer the judge); a transient failure
            keeps them for the next round.
        open_incidents: the store's open incidents (for a judge taking over).
        completed: how many batches the consumer has completed (stored and committed).
        partitions: how many partitions the topic has (0: not known yet).
        lateness_seconds: ``event_time.allowed_lateness_seconds``.
        stalled_seconds: ``event_time.stalled_partition_seconds``.
        lease_seconds: how long the judge's lease lasts without renewal.
        interval_seconds: how often each instance writes and asks to judge.
        metrics: where the judge's state and failed rounds are reported (``None``: nowhere).
    """

    #: The processor adds each event's ``partition`` to the frames it passes.
    by_partition: Final = True

    def __init__(self, detector: IncidentDetector, counts: FleetCounts, clock: EventClock, *,
                 owner: str,
                 record: Callable[[list[IncidentChange], Callable[[Database | None], object]], Awaitable[object]],
                 open_incidents: Callable[[], list[Incident]], completed: Callable[[], int],
                 partitions: Callable[[], int], lateness_seconds: float, stalled_seconds: float,
                 lease_seconds: float = 15.0, interval_seconds: float = 0.25,
                 metrics: FleetMetrics | None = None) -> None:
        self.detector = detector
        self.rules = detector.rules
        self.counts = counts
        self.clock = clock
        self.owner = owner
        self._record = record
        self._open_incidents = open_incidents
        self._completed = completed
        self._partitions = partitions
        self.lateness_us = int(lateness_seconds * _US)
        self.stalled_seconds = stalled_seconds
        self.lease_seconds = lease_seconds
        self.interval_seconds = interval_seconds
        self.metrics = metrics
        self._lock = threading.Lock()  # guards _staged (observe runs on the consumer's side)
        self._staged: list[_Staged] = []
        self._buckets: dict[int, BucketCounts] = {}  # <partition: its aggregates not written yet>
        self._vips: dict[int, list[VipRow]] = {}  # <partition: its VIP failures not written yet>
        self._flushed: dict[int, int | None] = {}  # <partition: last bucket written>
        self._positions: dict[int, tuple[int | None, bool]] = {}  # the latest committed batch's
        self._failed_at: dict[int, dict[str, int]] = {}  # <partition: <terminal ID: latest bucket it failed in>>
        self._unrecorded: _Round | None = None  # judged, not stored yet
        self._written: dict[int, tuple[int | None, bool, int | None]] = {}  # <partition: last progress written>
        self._next_claim = 0.0  # monotonic time before which another judge's lease is not asked for
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._late = 0
        #: Whether this instance held the judge's lease at its last round.
        self.judging = False

    def __repr__(self) -> str:
        return f"FleetIncidents(owner={self.owner!r}, judging={self.judging}, partitions={sorted(self._flushed)})"

    @property
    def late_events(self) -> int:
        """Events that arrived for a bucket their partition had already written (left out)."""
        return self._late + sum(b.late_events for b in self._buckets.values())

    # -- the batch side -------------------------------------------------------------------

    def observe(self, frame: pl.DataFrame, *, watermark: object = None,
                vip: pl.DataFrame | None = None) -> list[IncidentChange]:
        """Keep one batch's events on time (with their ``partition``) until the batch is committed.

        Args:
            frame: the batch's events on time with a ``partition`` column (see
                :meth:`IncidentDetector.observe <monitor.incidents.IncidentDetector.observe>`).
            watermark: ignored (the fleet's watermark is computed over every partition).
            vip: the batch's VIP failures to attribute.

        Returns:
            ``[]``: the judge's changes are stored by :meth:`run`.
        """
        del watermark
        vips = self._vip_rows(frame, vip)
        staged = _Staged(self._completed(), frame.select("partition", "occurred_at", "outcome", "card_ref",
                                                           "terminal_id", "merchant_id", "region", "pan_masked")
                         if frame.height else frame, vips, self.clock.positions())
        with self._lock:
            self._staged.append(staged)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        return []

    def _vip_rows(self, frame: pl.DataFrame, vip: pl.DataFrame | None) -> pl.DataFrame:
        scopes = self.rules.ordered_scopes
        size = self.rules.bucket_seconds
        if vip is None or vip.height == 0 or frame.height == 0:
            return pl.DataFrame()
        return (vip.filter(pl.col("outcome").is_in(self.rules.outcome_classes))
                .with_columns(pl.col("event_id").cast(pl.String))
                .join(frame.select(pl.col("event_id").cast(pl.String), "partition").unique("event_id"),
                      on="event_id", how="inner")
                .select("partition", "event_id",
                        (pl.col("occurred_at").dt.epoch("s") // size).cast(pl.Int64).alias("bucket"),
                        pl.col("occurred_at").dt.epoch("us").alias("at_us"),
                        *[scope_key(scope).alias(f"k_{scope}") for scope in scopes]))

    # -- the background task ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Write the committed batches' partials and judge when holding the lease, until ``stop``.

        A failed round is tried again after a pause that doubles from ``interval_seconds``
        up to :data:`_RETRY_MAX_SECONDS` (a batch does not cut it short), logged once
        when it starts failing (a traceback for a non-transient error), then once a
        minute, and once when a round succeeds again; nothing is lost meanwhile (the
        partials stay in memory, the changes are kept; if another instance takes the
        lease over meanwhile, it judges their buckets and this one drops them).
        """
        self._loop = asyncio.get_running_loop()
        pause = 0.0  # > 0 while rounds fail: the backoff before the next attempt
        failing_since: float | None = None
        last_logged = 0.0
        while not stop.is_set():
            try:
                if pause:
                    await asyncio.wait_for(stop.wait(), timeout=pause)
                else:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            if stop.is_set():
                break
            try:
                await self.round()
            except Exception as error:  # never stop the monitor: the next round tries again
                if self.metrics is not None:
                    self.metrics.observe_round_failed()
                now = time.monotonic()
                pause = min(max(pause * 2, self.interval_seconds), _RETRY_MAX_SECONDS)
                if failing_since is None or now - last_logged >= _LOG_EVERY_SECONDS:
                    last_logged = now
                    failing_since = failing_since if failing_since is not None else now
                    if is_transient(error):
                        log.warning("scale-out round failed (%s) for %.0f s; trying again in %g s",
                                    type(error).__name__, now - failing_since, pause)
                    else:
                        log.exception("scale-out round failed for %.0f s; trying again in %g s",
                                      now - failing_since, pause)
                continue
            if failing_since is not None:
                log.warning("scale-out rounds work again after %.0f s", time.monotonic() - failing_since)
            pause, failing_since = 0.0, None
        try:  # what the committed batches passed, so the next owner need not wait for it
            await asyncio.to_thread(self.flush)
        except Exception as error:  # noqa: BLE001 - at worst, those buckets miss this share
            log.warning("scale-out: the last write of partial counts failed (%s)", type(error).__name__)
        if self.judging:
            try:
                await asyncio.to_thread(self.counts.release, self.owner)
            except Exception as error:  # noqa: BLE001 - the lease then runs out by itself
                log.warning("could not give up the judge's lease (%s); it runs out in %g s",
                            type(error).__name__, self.lease_seconds)
            self.judging = False
        if self.metrics is not None:
            self.metrics.set_judging(False)

    async def round(self) -> list[IncidentChange]:
        """One round: write what the committed batches passed, then judge if holding the lease.

        A round's changes are stored with its judged bucket, fenced by the lease. If
        storing fails (the store is down), they are kept and stored first next round,
        if this instance still holds the lease then; if another instance took it over
        meanwhile, they are dropped (the new judge judges those buckets again).

        Returns:
            The changes stored this round.

        Raises:
            Exception: the store's errors (the changes are kept for the next round).
        """
        if self._unrecorded is not None:  # the last round's changes first, in order
            await self._store(self._unrecorded)
        await asyncio.to_thread(self.flush)
        judged = await asyncio.to_thread(self.judge)
        if self.metrics is not None:
            self.metrics.set_judging(self.judging)
        if judged is None:
            return []
        self._unrecorded = judged
        return judged.changes if await self._store(judged) else []

    async def _store(self, judged: _Round) -> bool:
        """Store a round's changes and move the judged bucket, if still the judge; ``False``: dropped."""
        def fence(db: Database | None = None) -> None:
            self.counts.advance(self.owner, before=judged.before, through=judged.through,
                                lease_seconds=self.lease_seconds, db=db)
        try:
            if judged.changes:
                await self._record(judged.changes, fence)
            else:
                await asyncio.to_thread(fence)
        except LeaseLost:
            log.warning("lost the incident judge's lease before storing buckets %s to %s: "
                        "%d change(s) dropped, the new judge judges those buckets",
                        judged.before, judged.through, len(judged.changes))
            self._unrecorded = None
            self.judging = False  # judging again starts over from the store
            if self.metrics is not None:
                self.metrics.set_judging(False)
            return False
        self._unrecorded = None
        if self.metrics is not None:
            self.metrics.observe_judged_through(float((judged.through + 1) * self.rules.bucket_seconds))
        return True

    def flush(self) -> None:
        """Write each partition's partials of the buckets it has passed (committed batches only)."""
        done = self._completed()
        with self._lock:
            ready = [s for s in self._staged if s.marker < done]
            self._staged = [s for s in self._staged if s.marker >= done]
        for staged in ready:
            self._take(staged)
        if not self._positions:
            return
        unknown = [p for p in self._positions if p not in self._flushed]
        if unknown:
            found = self.counts.flushed_through(unknown)
            for p in unknown:
                self._flushed[p] = found.get(p)
        leader = self.counts.leader_us()
        local = [t for t, _ in self._positions.values() if t is not None]
        if local:
            leader = max(local) if leader is None else max(leader, *local)
        open_terminals: set[str] | None = None if "terminal" in self.rules.scopes else set()
        total = max(self._partitions(), max(self._positions) + 1)
        size_us = self.rules.bucket_seconds * _US
        for p, (latest, caught_up) in sorted(self._positions.items()):
            head = leader if caught_up else latest
            through = None if head is None else (head - self.lateness_us) // size_us - 1
            before = self._flushed.get(p)
            partials: list[PartialRow] = []
            vips: list[VipRow] = []
            moves = through is not None and (before is None or through > before)
            if not moves and self._written.get(p) == (latest, caught_up, before):
                continue  # nothing new to say about it
            if moves:
                assert through is not None
                if open_terminals is None:
                    open_terminals = self.counts.open_terminal_incidents()
                partials = self._partials(p, through, open_terminals)
                queued = self._vips.get(p, [])
                vips = [v for v in queued if v[1] <= through]
                self._vips[p] = [v for v in queued if v[1] > through]
            self._flushed[p] = self.counts.flush(
                p, partitions=total, owner=self.owner, latest_us=latest, caught_up=caught_up,
                through=through, partials=partials, vips=vips)
            self._written[p] = (latest, caught_up, self._flushed[p])

    def _take(self, staged: _Staged) -> None:
        """Aggregate one committed batch into its partitions' counts."""
        for p in [p for p in self._buckets if p not in staged.positions]:  # revoked: the new owner goes on
            self._late += self._buckets.pop(p).late_events
            self._vips.pop(p, None)
            self._flushed.pop(p, None)
            self._failed_at.pop(p, None)
            self._written.pop(p, None)
        self._positions = staged.positions
        if staged.frame.height:
            for (p,), part in staged.frame.partition_by("partition", as_dict=True).items():
                counts = self._buckets.setdefault(int(p), BucketCounts(self.rules))
                counts.add(part.drop("partition"), self._flushed.get(int(p)))
        if staged.vips.height:
            for p, event_id, bucket, at_us, *keys in staged.vips.iter_rows():
                before = self._flushed.get(p)
                if before is not None and bucket <= before:
                    continue  # its bucket was written: late
                self._vips.setdefault(p, []).append((event_id, bucket, at_us, list(keys)))

    def _partials(self, p: int, through: int, open_terminals: set[str]) -> list[PartialRow]:
        """Partition ``p``'s partials of its buckets up to ``through``: one IPC frame per bucket."""
        counts = self._buckets.get(p)
        if counts is None:
            return []
        totals, failing = counts.take_partials(through)
        if totals.height == 0:
            return []
        failing = failing.with_columns(pl.col("first").dt.epoch("us"), pl.col("last").dt.epoch("us"))
        # A terminal's bucket without failures matters only to a terminal the judge
        # follows: one that failed within the last windows (here: its events are all on
        # this partition) or has an open incident. Every other scope's key is shared
        # between partitions, so each of its buckets is written (its failure ratio).
        horizon = 2 * self.rules.window_buckets
        history = self._failed_at.get(p, {})
        failed = pl.concat([
            pl.DataFrame({"key": list(history), "failed": list(history.values())},
                         schema={"key": pl.String, "failed": pl.Int64}),
            failing.filter(pl.col("scope") == "terminal").select("key", pl.col("bucket").alias("failed")),
        ])
        terminal = pl.col("scope") == "terminal"
        quiet = (totals.filter(terminal & (pl.col("failures") == 0)).sort("bucket")
                 .join_asof(failed.sort("failed"), left_on="bucket", right_on="failed", by="key",
                            strategy="backward", check_sortedness=False)  # both sorted just above
                 .filter((pl.col("failed") >= pl.col("bucket") - horizon)
                         | pl.col("key").is_in(sorted(open_terminals)))
                 .drop("failed"))
        totals = pl.concat([totals.filter(~terminal | (pl.col("failures") > 0)), quiet])
        latest = failed.group_by("key").agg(pl.col("failed").max()).filter(pl.col("failed") >= through - horizon)
        self._failed_at[p] = dict(latest.iter_rows())
        rows = totals.join(failing, on=_KEYS, how="left").select(PARTIAL_SCHEMA.names()).cast(PARTIAL_SCHEMA)
        out: list[PartialRow] = []
        for (bucket,), part in sorted(rows.partition_by("bucket", as_dict=True).items()):
            buffer = io.BytesIO()
            part.write_ipc(buffer, compression="zstd")
            out.append((int(bucket), part.height, buffer.getvalue()))
        return out

    def judge(self) -> _Round | None:
        """Judge the buckets every partition has passed, if this instance holds the lease.

        Returns:
            The round to store (its changes may be empty: its buckets still move on),
            ``None``: nothing to judge or another instance judges.
        """
        if time.monotonic() < self._next_claim:
            return None  # another instance judges: ask again a third of a lease later
        claim = self.counts.claim(self.owner, lease_seconds=self.lease_seconds,
                                  stalled_seconds=self.stalled_seconds,
                                  keep_buckets=2 * self.rules.window_buckets + 2)
        if claim is None:
            self.judging = False
            self._next_claim = time.monotonic() + self.lease_seconds / 3
            return None
        if not self.judging or claim.previous_holder != self.owner or self.detector.closed != claim.judged_before:
            if claim.previous_holder not in (None, self.owner):
                log.info("taking over as the incident judge from %s at bucket %s",
                         claim.previous_holder, claim.judged_before)
            self.detector.resume(claim.judged_before, [i for i in self._open_incidents() if i.is_open])
        self.judging = True
        if claim.closed is None or claim.closed == claim.judged_before:
            return None
        scopes = self.rules.ordered_scopes
        vips = [WaitingVip(bucket, EPOCH + timedelta(microseconds=at_us), event_id, tuple(zip(scopes, keys)))
                for event_id, bucket, at_us, keys in claim.vips]
        rank: dict[str, int] = {scope: i for i, scope in enumerate(scopes)}
        rows = merge_partials(claim.partials, self.detector.followed(), rank)  # type: ignore[arg-type]
        return _Round(claim.judged_before, claim.closed, self.detector.judge_merged(claim.closed, rows, vips))

