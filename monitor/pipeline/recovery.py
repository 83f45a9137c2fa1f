"""The recovery watch: match a VIP's approvals to the watches of their failure alerts, decide.

A watch (one per alert, :mod:`monitor.alerts.store.recoveries`) is written with the alert
and is *recovered* by the earliest approved transaction of the same client and of a
kind (channel, transaction type) that failed in the alert, after that kind's first
failure and at or before the deadline (last failure +
``alerting.recovery_window_seconds``, event time); *abandoned* once event
time has passed the deadline without one. Step by step, after each batch's alerts
are stored (:meth:`RecoveryWatch.after_batch`, called by the consumer before it
commits; and every ``alerting.recovery_interval_seconds`` from a job,
:meth:`RecoveryWatch.decide`, for a quiet stream and for watches other instances wrote):

1. add the batch's VIP approvals
   (:attr:`~monitor.pipeline.processor.ProcessedBatch.approvals`) to the instance's
   buffer;
2. read the store's ``watching`` rows of the buffered clients (one indexed query) and
   match them with the buffer (:func:`match_recoveries`: earliest approval per watch);
   record the matches (:meth:`~monitor.alerts.store.recoveries.RecoveryQueries.mark_recovered`:
   the earliest approval wins if two instances race; only a ``watching`` →
   ``recovered`` step is counted, by the instance that made it);
3. abandon the watches whose deadline is before the event time every partition has
   passed: the instance's watermark; with ``alerting.scale_out``, the fleet's, from
   every partition's progress in the store (an index probe of the earliest deadline
   first, so most batches write nothing);
4. drop from the buffer the approvals older than the watermark minus the allowed
   lateness: a failure recorded later (a partition read behind, another instance) is
   not late only if it happened after that, and its recovery happened after it.

The buffer is what makes the result independent of batching and partition order: an
approval processed before the failure it recovers (another partition, read later)
waits in it until the failure's watch exists. Limits (``docs/recovery.md``): the
buffer is in memory, so an approval processed more than the allowed lateness before
its failure on another instance, or just before a crash, is missed and the watch
ends abandoned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import polars as pl

from monitor.alerts.store.recoveries import Recovery, RecoveryMatch

__all__ = ["WATCH_SCHEMA", "RecoveryDecisions", "RecoveryMetrics", "RecoveryStore", "RecoveryWatch",
           "match_recoveries", "watch_frame"]

log = logging.getLogger(__name__)

_TIME: Final = pl.Datetime("us", "UTC")
#: The columns :func:`match_recoveries` reads of the watches: one row per alert and kind
#: (``channel``, ``txn_type``) that failed in it, with that kind's first failure.
WATCH_SCHEMA: Final = pl.Schema({"alert_id": pl.String(), "customer_id": pl.String(),
                                 "channel": pl.String(), "txn_type": pl.String(),
                                 "first_failed_at": _TIME, "deadline": _TIME,
                                 "failed_terminal_id": pl.String()})
_KIND: Final = ["customer_id", "channel", "txn_type"]


class RecoveryStore(Protocol):
    """What the watch needs of the alert store (:class:`~monitor.alerts.store.AlertStore`)."""

    def watching_recoveries(self, customer_ids: Sequence[str] | None = None, *,
                            recovered_since: datetime | None = None) -> list[Recovery]: ...
    def recovery_kinds(self, alert_ids: Sequence[str]) -> list[tuple[str, str, str, datetime, str]]: ...
    def earliest_watch_deadline(self) -> datetime | None: ...
    def mark_recovered(self, matches: Sequence[RecoveryMatch], *,
                       now: datetime) -> list[Recovery]: ...
    def abandon_watches(self, through: datetime, *, now: datetime) -> list[Recovery]: ...


class RecoveryMetrics(Protocol):
    """Where decisions are counted (:class:`monitor.metrics.RecoveryMetrics`)."""

    def observe_recovered(self, recoveries: Sequence[Recovery]) -> None: ...
    def observe_abandoned(self, recoveries: Sequence[Recovery]) -> None: ...


@dataclass(frozen=True, slots=True)
class RecoveryDecisions:
    """The decisions one call made (each counted once, here).

    Attributes:
        recovered: watches this instance moved to ``recovered``.
        abandoned: watches this instance moved to ``abandoned``.
    """

    recovered: tuple[Recovery, ...] = ()
    abandoned: tuple[Recovery, ...] = ()


def watch_frame(watches: Sequence[Recovery],
                kinds: Sequence[tuple[str, str, str, datetime, str]] | None = None) -> pl.DataFrame:
    """The watches as a frame of :data:`WATCH_SCHEMA` (for :func:`match_recoveries`).

    Args:
        watches: the watches.
        kinds: ``(alert_id, channel, txn_type, first failure, its terminal)`` of every kind that failed
            in them (:meth:`~monitor.alerts.store.recoveries.RecoveryQueries.recovery_kinds`);
            ``None``: each watch's own first failure only.
    """
    if kinds is None:
        kinds = [(w.alert_id, w.channel, w.txn_type, w.first_failed_at, w.failed_terminal_id)
                 for w in watches]
    by_alert = {w.alert_id: w for w in watches}
    rows = [(alert_id, by_alert[alert_id].customer_id, channel, txn_type, first,
             by_alert[alert_id].window_ends_at, terminal)
            for alert_id, channel, txn_type, first, terminal in kinds if alert_id in by_alert]
    return pl.DataFrame(rows, schema=WATCH_SCHEMA, orient="row")


def match_recoveries(watches: pl.DataFrame, approvals: pl.DataFrame) -> pl.DataFrame:
    """The earliest approval that recovers each watch, if any.

    An approval recovers a watch when it has the watch's ``customer_id`` and one of its
    kinds (``channel``, ``txn_type``), and that kind's ``first_failed_at < occurred_at
    <= deadline``. Of several, the earliest (by ``occurred_at``, then ``event_id``)
    wins, so the result does not depend on the approvals' order.

    Args:
        watches: columns of :data:`WATCH_SCHEMA`.
        approvals: columns of :data:`~monitor.pipeline.processor.APPROVAL_COLUMNS`.

    Returns:
        One row per recovered watch, sorted by ``alert_id``: ``alert_id``,
        ``occurred_at``, ``event_id``, ``terminal_id``, ``merchant_id``, ``channel``,
        ``txn_type``, ``first_failed_at`` and ``failed_terminal_id`` (that kind's first
        failure in the alert).
    """
    return (watches.join(approvals, on=_KIND, how="inner")
            .filter((pl.col("occurred_at") > pl.col("first_failed_at"))
                    & (pl.col("occurred_at") <= pl.col("deadline")))
            .sort("alert_id", "occurred_at", "event_id")
            .unique("alert_id", keep="first", maintain_order=True)
            .select("alert_id", "occurred_at", "event_id", "terminal_id", "merchant_id",
                    "channel", "txn_type", "first_failed_at", "failed_terminal_id"))


class RecoveryWatch:
    """This instance's side of the recovery watch: the approvals buffer and the decisions.

    Args:
        store: the alert store.
        watermark: the event time every partition has passed (``None``: none yet); the
            instance's :class:`~monitor.pipeline.watermark.EventClock` watermark, or with
            scale-out the fleet's.
        lateness_seconds: ``event_time.allowed_lateness_seconds``: approvals older than
            the watermark minus this leave the buffer.
        metrics: where decisions are counted (``None``: nowhere).
        now: the wall clock of decisions (UTC).

    Thread-safe: the consumer's thread and the scheduler's job take turns on one lock.
    """

    def __init__(self, store: RecoveryStore, *, watermark: Callable[[], datetime | None],
                 lateness_seconds: float, metrics: RecoveryMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self._watermark = watermark
        self.lateness = timedelta(seconds=lateness_seconds)
        self.metrics = metrics
        self._now = now
        self._lock = threading.Lock()
        # <approvals kept for failures recorded later> (APPROVAL_COLUMNS)
        self._buffer: pl.DataFrame | None = None

    def __repr__(self) -> str:
        return f"RecoveryWatch(buffered={self.buffered})"

    @property
    def buffered(self) -> int:
        """How many approvals wait in the buffer."""
        return 0 if self._buffer is None else self._buffer.height

    def after_batch(self, approvals: pl.DataFrame, *, failures: bool = True) -> RecoveryDecisions:
        """Take one stored batch's VIP approvals, then match and decide (steps 1–4).

        Args:
            approvals: the batch's approvals (``ProcessedBatch.approvals``).
            failures: whether the batch stored VIP failures (new or moved watches). A
                batch with neither approvals nor failures skips matching (nothing new
                here can match; the job matches other instances' new watches).

        Raises:
            Exception: the store's errors; the approvals stay in the buffer and are
                matched at the next call.
        """
        with self._lock:
            if approvals.height:
                self._buffer = approvals if self._buffer is None else pl.concat(
                    [self._buffer, approvals], how="vertical_relaxed")
            return self._decide(match=failures or approvals.height > 0)

    def decide(self) -> RecoveryDecisions:
        """Match the buffer with the store's watches, abandon the expired ones (steps 2–4)."""
        with self._lock:
            return self._decide()

    def _decide(self, *, match: bool = True) -> RecoveryDecisions:
        through = self._watermark()
        earliest = self.store.earliest_watch_deadline() if through is not None else None
        expiring = through is not None and earliest is not None and earliest < through
        recovered: list[Recovery] = []
        # Before any watch is abandoned, the buffer is matched: another instance may have
        # written the watch an approval buffered here recovers.
        if (match or expiring) and self._buffer is not None and self._buffer.height:
            recovered = self._match(self._buffer)
        abandoned: list[Recovery] = []
        if expiring:
            assert through is not None
            abandoned = self.store.abandon_watches(through, now=self._now())
            if abandoned and self.metrics is not None:
                self.metrics.observe_abandoned(abandoned)
        self._prune()
        return RecoveryDecisions(tuple(recovered), tuple(abandoned))

    def _match(self, buffer: pl.DataFrame) -> list[Recovery]:
        """Step 2: the buffered clients' watches, matched and recorded; the decisions made."""
        # Recovered watches too, while a buffered approval could still be earlier than theirs.
        since: datetime = buffer.get_column("occurred_at").min()  # type: ignore[assignment]
        watches = self.store.watching_recoveries(
            buffer.get_column("customer_id").unique().to_list(), recovered_since=since)
        if not watches:
            return []
        held = {w.alert_id: w.recovered_at for w in watches if w.recovered_at is not None}
        kinds = self.store.recovery_kinds([w.alert_id for w in watches])
        found = match_recoveries(watch_frame(watches, kinds), buffer)
        matched = [row for row in found.iter_rows()
                   if row[0] not in held or row[1] < held[row[0]]]
        if not matched:
            return []
        recovered = self.store.mark_recovered(
            [RecoveryMatch(alert_id=alert_id, recovered_at=at, event_id=event_id,
                           terminal_id=terminal_id, merchant_id=merchant_id, channel=channel,
                           txn_type=txn_type, failed_at=failed_at, failed_terminal_id=failed_terminal)
             for (alert_id, at, event_id, terminal_id, merchant_id, channel, txn_type, failed_at,
                  failed_terminal) in matched],
            now=self._now())
        if recovered and self.metrics is not None:
            self.metrics.observe_recovered(recovered)
        return recovered

    def _prune(self) -> None:
        through = self._watermark()
        if self._buffer is None or through is None:
            return
        self._buffer = self._buffer.filter(pl.col("occurred_at") > through - self.lateness)
