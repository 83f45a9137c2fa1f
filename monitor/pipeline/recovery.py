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
   buffer, filed by client and kind (:func:`approvals_by_kind`: the frame's columns as
   lists, times as integer microseconds; no polars query);
2. read every open watch's kinds, whoever wrote them
   (:meth:`~monitor.alerts.store.recoveries.RecoveryQueries.open_watch_kinds`: one
   indexed query, no client list; only the buffered clients' when the watches
   watching outnumber them) and match them with the buffer
   (:func:`earliest_recoveries`: earliest approval per watch, by one dict look-up per
   kind; the same answer as the frame join :func:`match_recoveries`, which a property
   test holds it to); record the matches
   (:meth:`~monitor.alerts.store.recoveries.RecoveryQueries.mark_recovered`: the
   earliest approval wins if two instances race; only a ``watching`` → ``recovered``
   step is counted, by the instance that made it);
3. abandon the watches whose deadline is before the event time every partition has
   passed: the instance's watermark; with ``alerting.scale_out``, the fleet's, from
   every partition's progress in the store (the earliest deadline of the watches still
   watching comes from step 2's read of every watch, or else from an index probe, so
   most batches write nothing);
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple, Protocol

import polars as pl

from monitor.alerts.store.recoveries import Recovery, RecoveryMatch, WatchKind

__all__ = ["WATCH_SCHEMA", "Approval", "RecoveryDecisions", "RecoveryMetrics", "RecoveryStore",
           "RecoveryWatch", "approvals_by_kind", "earliest_recoveries", "match_recoveries",
           "watch_frame"]

log = logging.getLogger(__name__)

_TIME: Final = pl.Datetime("us", "UTC")
#: The columns :func:`match_recoveries` reads of the watches: one row per alert and kind
#: (``channel``, ``txn_type``) that failed in it, with that kind's first failure.
WATCH_SCHEMA: Final = pl.Schema({"alert_id": pl.String(), "customer_id": pl.String(),
                                 "channel": pl.String(), "txn_type": pl.String(),
                                 "first_failed_at": _TIME, "deadline": _TIME,
                                 "failed_terminal_id": pl.String()})
_KIND: Final = ["customer_id", "channel", "txn_type"]
# The approvals' columns in the order the buffer takes them (APPROVAL_COLUMNS' names).
_APPROVAL_ORDER: Final = ("customer_id", "channel", "txn_type", "occurred_at", "event_id",
                          "terminal_id", "merchant_id")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class Approval(NamedTuple):
    """One buffered VIP approval (filed in the buffer under its client and kind).

    Attributes:
        occurred_at_us: its event time, integer microseconds since the Unix epoch (UTC):
            the buffer compares and prunes integers, not aware datetimes.
        event_id: its event ID.
        terminal_id: its terminal.
        merchant_id: its merchant, if any.
    """

    occurred_at_us: int
    event_id: str
    terminal_id: str
    merchant_id: str | None

    @property
    def occurred_at(self) -> datetime:
        """Its event time (aware, UTC)."""
        return _time(self.occurred_at_us)


def _micros(value: datetime) -> int:
    """Integer microseconds since the Unix epoch of an aware time."""
    return (value - _EPOCH) // _MICROSECOND


def _time(micros: int) -> datetime:
    """The aware time (UTC) of integer microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def approvals_by_kind(approvals: pl.DataFrame) -> dict[tuple[str, str, str], list[Approval]]:
    """The approvals of a frame by ``(customer_id, channel, txn_type)``, as the buffer files them.

    Args:
        approvals: columns of :data:`~monitor.pipeline.processor.APPROVAL_COLUMNS`
            (``occurred_at`` an aware datetime column).

    Returns:
        Each client and kind's approvals, in the frame's order (the columns read as
        lists, times as their integer microseconds: no polars query, which would wait
        for the polars pool the processor and terminal health keep busy).
    """
    times = approvals.get_column("occurred_at")
    if getattr(times.dtype, "time_unit", "us") != "us":
        times = times.dt.cast_time_unit("us")
    columns = [times.to_physical().to_list() if name == "occurred_at"
               else approvals.get_column(name).to_list() for name in _APPROVAL_ORDER]
    filed: dict[tuple[str, str, str], list[Approval]] = {}
    for customer_id, channel, txn_type, at, event_id, terminal_id, merchant_id in zip(
            *columns, strict=True):
        filed.setdefault((customer_id, channel, txn_type), []).append(
            Approval(at, event_id, terminal_id, merchant_id))
    return filed


class RecoveryStore(Protocol):
    """What the watch needs of the alert store (:class:`~monitor.alerts.store.AlertStore`)."""

    def open_watch_kinds(self, customer_ids: Sequence[str] | None = None, *,
                         recovered_since: datetime | None) -> list[WatchKind]: ...
    def watching_extent(self) -> tuple[int, datetime | None]: ...
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
    """The earliest approval that recovers each watch, if any (the rule, as a frame join).

    The watch itself matches with :func:`earliest_recoveries` (same answer, no polars
    call); this is the rule's reference, for tests and analysis.

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


def earliest_recoveries(kinds: Iterable[WatchKind],
                        buffer: Mapping[tuple[str, str, str], Sequence[Approval]],
                        ) -> list[tuple[WatchKind, Approval]]:
    """The earliest approval that recovers each watch, if any: :func:`match_recoveries` in Python.

    The same rule and the same answer (a property test checks it), without a polars
    call: per batch the open watches' kinds are a few hundred at most and each finds its
    client's few approvals of that kind by one dict look-up, where the frame join pays
    for the polars pool each time.

    Args:
        kinds: the open watches' kinds (:meth:`~monitor.alerts.store.recoveries.RecoveryQueries.open_watch_kinds`).
        buffer: the approvals by ``(customer_id, channel, txn_type)``.

    Returns:
        ``(kind, approval)`` per recovered watch, sorted by alert ID: the earliest
        approval (by ``occurred_at``, then ``event_id``) with ``first_failed_at <
        occurred_at <= deadline`` of one of its kinds, and that kind.
    """
    best: dict[str, tuple[WatchKind, Approval]] = {}
    for kind in kinds:
        approvals = buffer.get((kind.customer_id, kind.channel, kind.txn_type))
        if not approvals:
            continue
        first, deadline = _micros(kind.first_failed_at), _micros(kind.deadline)
        for approval in approvals:
            if first < approval.occurred_at_us <= deadline:
                held = best.get(kind.alert_id)
                if held is None or ((approval.occurred_at_us, approval.event_id)
                                    < (held[1].occurred_at_us, held[1].event_id)):
                    best[kind.alert_id] = (kind, approval)
    return [best[alert_id] for alert_id in sorted(best)]


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
        # <(customer_id, channel, txn_type): approvals kept for failures recorded later>
        self._buffer: dict[tuple[str, str, str], list[Approval]] = {}
        self._count = 0  # approvals in the buffer
        self._oldest: int | None = None  # its earliest occurred_at_us (None: empty)
        # Watches watching at the last read or probe: whether the next read asks for the
        # buffered clients' watches (fewer clients than watches) or reads them all.
        self._open = 0

    def __repr__(self) -> str:
        return f"RecoveryWatch(buffered={self.buffered})"

    @property
    def buffered(self) -> int:
        """How many approvals wait in the buffer."""
        return self._count

    def after_batch(self, approvals: pl.DataFrame, *, failures: bool = True) -> RecoveryDecisions:
        """Take one stored batch's VIP approvals, then match and decide (steps 1–4).

        Args:
            approvals: the batch's approvals (``ProcessedBatch.approvals``: columns of
                :data:`~monitor.pipeline.processor.APPROVAL_COLUMNS`).
            failures: whether the batch stored VIP failures (new or moved watches). A
                batch with neither approvals nor failures skips matching (nothing new
                here can match; the job matches other instances' new watches).

        Raises:
            Exception: the store's errors; the approvals stay in the buffer and are
                matched at the next call.
        """
        with self._lock:
            if approvals.height:
                self._take(approvals)
            return self._decide(match=failures or approvals.height > 0)

    def decide(self) -> RecoveryDecisions:
        """Match the buffer with the store's watches, abandon the expired ones (steps 2–4)."""
        with self._lock:
            return self._decide()

    def _take(self, approvals: pl.DataFrame) -> None:
        """Step 1: file the approvals in the buffer by client and kind."""
        buffer = self._buffer
        for key, filed in approvals_by_kind(approvals).items():
            held = buffer.get(key)
            if held is None:
                buffer[key] = filed
            else:
                held += filed
            oldest = min(approval.occurred_at_us for approval in filed)
            if self._oldest is None or oldest < self._oldest:
                self._oldest = oldest
        self._count += approvals.height

    def _decide(self, *, match: bool = True) -> RecoveryDecisions:
        through = self._watermark()
        recovered: list[Recovery] = []
        earliest: datetime | None = None
        if match and self._count:
            recovered, earliest, known = self._match()
            if not known and through is not None:
                earliest = self._probe()
        elif through is not None:
            earliest = self._probe()
            # Before any watch is abandoned, the buffer is matched: another instance may
            # have written the watch an approval buffered here recovers.
            if earliest is not None and earliest < through and self._count:
                recovered, after, known = self._match()
                if known:
                    earliest = after
        abandoned: list[Recovery] = []
        if through is not None and earliest is not None and earliest < through:
            abandoned = self.store.abandon_watches(through, now=self._now())
            if abandoned and self.metrics is not None:
                self.metrics.observe_abandoned(abandoned)
        self._prune(through)
        return RecoveryDecisions(tuple(recovered), tuple(abandoned))

    def _probe(self) -> datetime | None:
        """The earliest deadline still watching (one index probe; counts the watches too)."""
        self._open, earliest = self.store.watching_extent()
        return earliest

    def _match(self) -> tuple[list[Recovery], datetime | None, bool]:
        """Step 2: the open watches matched with the buffer and recorded (one read, no polars).

        Every open watch is read in one query, unless the watches watching (at the last
        read or probe) outnumber the buffered clients: then only those clients' are.

        Returns:
            The decisions made; the earliest deadline of the watches still ``watching``
            after them (``None``: none); whether that deadline is known (every client's
            watches were read), else the caller probes for it.
        """
        # Recovered watches too, while a buffered approval could still be earlier than theirs.
        since = None if self._oldest is None else _time(self._oldest)
        clients = {customer_id for customer_id, _, _ in self._buffer}
        every = self._open <= len(clients)
        kinds = self.store.open_watch_kinds(None if every else sorted(clients),
                                            recovered_since=since)
        found = [(kind, approval) for kind, approval in earliest_recoveries(kinds, self._buffer)
                 if kind.recovered_at is None
                 or (approval.occurred_at_us, approval.event_id)
                 < (_micros(kind.recovered_at), kind.recovery_event_id or "")]
        earliest: datetime | None = None
        if every:
            # A matched watch is no longer watching (recovered here, or decided elsewhere).
            matched = {kind.alert_id for kind, _ in found}
            watching = {kind.alert_id: kind.deadline for kind in kinds
                        if kind.watching and kind.alert_id not in matched}
            self._open = len(watching)
            earliest = min(watching.values(), default=None)
        if not found:
            return [], earliest, every
        recovered = self.store.mark_recovered(
            [RecoveryMatch(alert_id=kind.alert_id, recovered_at=approval.occurred_at,
                           event_id=approval.event_id, terminal_id=approval.terminal_id,
                           merchant_id=approval.merchant_id, channel=kind.channel,
                           txn_type=kind.txn_type, failed_at=kind.first_failed_at,
                           failed_terminal_id=kind.failed_terminal_id)
             for kind, approval in found],
            now=self._now())
        if recovered and self.metrics is not None:
            self.metrics.observe_recovered(recovered)
        return recovered, earliest, every

    def _prune(self, through: datetime | None) -> None:
        """Step 4: drop the approvals at or before ``through`` minus the allowed lateness."""
        if through is None or self._oldest is None:
            return
        cutoff = _micros(through - self.lateness)
        if self._oldest > cutoff:
            return
        kept: dict[tuple[str, str, str], list[Approval]] = {}
        for key, approvals in self._buffer.items():
            left = [approval for approval in approvals if approval.occurred_at_us > cutoff]
            if left:
                kept[key] = left
        self._buffer = kept
        self._count = sum(map(len, kept.values()))
        self._oldest = min((approval.occurred_at_us for approvals in kept.values()
                            for approval in approvals), default=None)
