"""The recovery watch's rows: did a VIP client complete a transaction of the failure's kind?

One row per alert in ``alert_recoveries`` (schema 8,
:data:`~monitor.alerts.store.schema.RECOVERY_TABLES`), written with the alert by
:meth:`~monitor.alerts.store.recording.Recording.record` (:func:`watch_failure`), in the
same transaction: status ``watching`` from the alert's first failure until its
``deadline`` (its last failure + the window, event time); every kind that failed in the
alert is in ``alert_recovery_kinds``. Then exactly
one decision, made by whichever instance sees it first:

- **recovered** (:meth:`RecoveryQueries.mark_recovered`): an approved transaction of a
  kind (``channel``, ``txn_type``) that failed in the alert, after that kind's first
  failure, at or before the deadline.
  Two instances racing keep the earliest approval (the update applies while the row is
  ``watching`` or holds a later approval); only the ``watching`` → ``recovered`` step is
  reported as a decision (metrics count it once, on the instance that made it);
- **abandoned** (:meth:`RecoveryQueries.abandon_watches`): event time has passed the
  deadline with no such approval. An abandoned watch stays abandoned.

The pipeline decides (:mod:`monitor.pipeline.recovery`); the store records. Reads:
:meth:`RecoveryQueries.recovery_of` and :meth:`RecoveryQueries.recoveries_of` give the
:class:`Recovery` of alerts (API, export, workspace). ``docs/recovery.md`` says what is
guaranteed and where it stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, NamedTuple

from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database, Row
from monitor.alerts.store.rows import parse_utc, utc_text
from monitor.domain import VipFailure

__all__ = ["RECOVERY_STATUSES", "Recovery", "RecoveryMatch", "RecoveryQueries", "RecoveryStatus",
           "WatchKind", "watch_failure"]

RecoveryStatus = Literal["watching", "recovered", "abandoned"]
#: A watch's statuses, in the order they are reached.
RECOVERY_STATUSES: Final[tuple[RecoveryStatus, ...]] = ("watching", "recovered", "abandoned")
# The most alerts one read takes (SQL parameters stay well under any database's limit).
_MAX_IDS: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """One alert's recovery watch.

    Attributes:
        alert_id: the alert.
        customer_id: its VIP client.
        manager_id: the client's manager when the alert was raised.
        channel: the channel of the alert's first failure (``atm``, ``pos``, ``ecom``...).
        txn_type: its transaction type (``withdrawal``, ``purchase``...).
        outcome: its outcome class.
        failed_terminal_id: its terminal.
        first_failed_at: the alert's first failure (event time, UTC).
        last_failed_at: its last failure.
        window_ends_at: the deadline: ``last_failed_at`` + the watch window.
        status: ``watching``, ``recovered`` or ``abandoned``.
        recovered_at: the approval's event time (``recovered`` only).
        recovery_event_id: the approved transaction's event ID.
        terminal_id: where the client recovered (terminal ID).
        merchant_id: the merchant of that terminal, if any.
        recovery_channel: the approved transaction's channel (one of the kinds that
            failed in the alert, not always the first failure's).
        recovery_txn_type: its transaction type.
        recovery_failed_at: the first failure of that kind in the alert (event time).
        recovery_failed_terminal_id: its terminal.
        decided_at: wall-clock time of the decision (``None`` while watching).
        follow_up: whether a follow-up to the manager was queued (``follow_up`` 1; 0 is
            not yet, 2 not sent: :mod:`~monitor.alerts.store.follow_ups`).
    """

    alert_id: str
    customer_id: str
    manager_id: str
    channel: str
    txn_type: str
    outcome: str
    failed_terminal_id: str
    first_failed_at: datetime
    last_failed_at: datetime
    window_ends_at: datetime
    status: RecoveryStatus
    recovered_at: datetime | None = None
    recovery_event_id: str | None = None
    terminal_id: str | None = None
    merchant_id: str | None = None
    recovery_channel: str | None = None
    recovery_txn_type: str | None = None
    recovery_failed_at: datetime | None = None
    recovery_failed_terminal_id: str | None = None
    decided_at: datetime | None = None
    follow_up: bool = False

    @property
    def completed_txn_type(self) -> str:
        """The transaction type the client completed (recovered) or failed to (otherwise)."""
        return self.recovery_txn_type or self.txn_type

    @property
    def reference_failed_at(self) -> datetime:
        """The failure the recovery answers: the first of the kind completed, else the alert's first."""
        return self.recovery_failed_at or self.first_failed_at

    @property
    def reference_terminal_id(self) -> str:
        """Where that failure happened."""
        return self.recovery_failed_terminal_id or self.failed_terminal_id

    @property
    def seconds_to_recovery(self) -> float | None:
        """Seconds from the first failure of the kind completed to the approval (``None`` unless recovered)."""
        if self.recovered_at is None:
            return None
        return (self.recovered_at - self.reference_failed_at).total_seconds()

    @property
    def same_terminal(self) -> bool | None:
        """Whether the client completed it where that kind first failed (``None`` unless recovered)."""
        if self.terminal_id is None:
            return None
        return self.terminal_id == self.reference_terminal_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryMatch:
    """The approval that recovers one watch (what :meth:`RecoveryQueries.mark_recovered` writes).

    Attributes:
        alert_id: the watch's alert.
        recovered_at: the approval's event time (aware).
        event_id: its event ID.
        terminal_id: its terminal.
        merchant_id: its merchant, if any.
        channel: its channel (a kind that failed in the alert).
        txn_type: its transaction type.
        failed_at: the first failure of that kind in the alert.
        failed_terminal_id: its terminal.
    """

    alert_id: str
    recovered_at: datetime
    event_id: str
    terminal_id: str
    merchant_id: str | None = None
    channel: str | None = None
    txn_type: str | None = None
    failed_at: datetime | None = None
    failed_terminal_id: str | None = None


class WatchKind(NamedTuple):
    """One kind that failed in an open watch: what the recovery watch matches approvals with.

    Attributes:
        alert_id: the watch's alert.
        customer_id: its VIP client.
        watching: whether the watch is ``watching`` (else ``recovered``).
        channel: the kind's channel.
        txn_type: its transaction type.
        first_failed_at: its first failure in the alert (event time, aware).
        deadline: the watch's deadline (aware).
        failed_terminal_id: the terminal of that first failure.
        recovered_at: the approval holding the watch (``recovered`` only, else ``None``).
        recovery_event_id: that approval's event ID (ties of ``recovered_at`` go to the
            lower event ID, as within one batch).
    """

    alert_id: str
    customer_id: str
    watching: bool
    channel: str
    txn_type: str
    first_failed_at: datetime
    deadline: datetime
    failed_terminal_id: str
    recovered_at: datetime | None
    recovery_event_id: str | None = None


# Every kind of the open watches (the WHERE clause is added per call). A watch without
# kind rows (none is written so) is matched on its own first failure.
_OPEN_KINDS: Final = """SELECT r.alert_id, r.customer_id, r.status, r.deadline, r.recovered_at,
        r.recovery_event_id,
        COALESCE(k.channel, r.channel) AS channel, COALESCE(k.txn_type, r.txn_type) AS txn_type,
        COALESCE(k.first_failed_at, r.first_failed_at) AS first_failed_at,
        COALESCE(k.failed_terminal_id, r.failed_terminal_id) AS failed_terminal_id
    FROM alert_recoveries r LEFT JOIN alert_recovery_kinds k ON k.alert_id = r.alert_id"""


# The earliest failure (event time) gives the watch's kind, outcome and terminal; the
# last one its deadline, whatever order failures are recorded in and whatever the
# watch's status (so the row does not depend on batching or partition order).
_EARLIER: Final = "excluded.first_failed_at < alert_recoveries.first_failed_at"
_UPSERT: Final = f"""INSERT INTO alert_recoveries (
        alert_id, customer_id, manager_id, channel, txn_type, outcome, failed_terminal_id,
        first_failed_at, last_failed_at, deadline)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (alert_id) DO UPDATE SET
        channel = CASE WHEN {_EARLIER} THEN excluded.channel ELSE alert_recoveries.channel END,
        txn_type = CASE WHEN {_EARLIER} THEN excluded.txn_type ELSE alert_recoveries.txn_type END,
        outcome = CASE WHEN {_EARLIER} THEN excluded.outcome ELSE alert_recoveries.outcome END,
        failed_terminal_id = CASE WHEN {_EARLIER}
            THEN excluded.failed_terminal_id ELSE alert_recoveries.failed_terminal_id END,
        first_failed_at = CASE WHEN {_EARLIER}
            THEN excluded.first_failed_at ELSE alert_recoveries.first_failed_at END,
        last_failed_at = CASE WHEN excluded.last_failed_at > alert_recoveries.last_failed_at
            THEN excluded.last_failed_at ELSE alert_recoveries.last_failed_at END,
        deadline = CASE WHEN excluded.deadline > alert_recoveries.deadline
            THEN excluded.deadline ELSE alert_recoveries.deadline END"""
# Every kind that failed in the alert, with its first failure.
_KIND_EARLIER: Final = "excluded.first_failed_at < alert_recovery_kinds.first_failed_at"
_UPSERT_KIND: Final = f"""INSERT INTO alert_recovery_kinds
        (alert_id, channel, txn_type, first_failed_at, failed_terminal_id)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (alert_id, channel, txn_type) DO UPDATE SET
        failed_terminal_id = CASE WHEN {_KIND_EARLIER}
            THEN excluded.failed_terminal_id ELSE alert_recovery_kinds.failed_terminal_id END,
        first_failed_at = CASE WHEN {_KIND_EARLIER}
            THEN excluded.first_failed_at ELSE alert_recovery_kinds.first_failed_at END"""


def watch_failure(conn: Database, alert_id: str, failure: VipFailure,
                  window_seconds: float) -> None:
    """Start the alert's watch with this failure, or move it on (inside the recording transaction).

    A new alert's first failure starts the watch (``watching``, deadline = its time +
    the window). Each later failure adds its kind (``channel``, ``txn_type``) to the
    kinds watched, moves ``last_failed_at`` and the deadline on when it is later, and
    becomes the watch's first failure (kind, outcome class, terminal) when it is
    earlier (read out of order): the row ends the same whatever order the failures
    are recorded in. A decision already made stands.

    Args:
        conn: the recording transaction.
        alert_id: the failure's alert.
        failure: the VIP failure (its event's time, channel, type, outcome, terminal).
        window_seconds: the watch window (> 0).
    """
    event = failure.event
    at = utc_text(event.occurred_at)
    conn.execute(_UPSERT, (
        alert_id, failure.customer_id, failure.manager.manager_id, event.channel, event.txn_type,
        event.outcome, event.terminal_id, at, at,
        utc_text(event.occurred_at + timedelta(seconds=window_seconds))))
    conn.execute(_UPSERT_KIND, (alert_id, event.channel, event.txn_type, at, event.terminal_id))


def _recovery(row: Row) -> Recovery:
    def when(name: str) -> datetime | None:
        value = row[name]
        return parse_utc(value) if value else None

    return Recovery(
        alert_id=row["alert_id"], customer_id=row["customer_id"], manager_id=row["manager_id"],
        channel=row["channel"], txn_type=row["txn_type"], outcome=row["outcome"],
        failed_terminal_id=row["failed_terminal_id"],
        first_failed_at=parse_utc(row["first_failed_at"]),
        last_failed_at=parse_utc(row["last_failed_at"]),
        window_ends_at=parse_utc(row["deadline"]), status=row["status"],
        recovered_at=when("recovered_at"), recovery_event_id=row["recovery_event_id"],
        terminal_id=row["recovery_terminal_id"], merchant_id=row["recovery_merchant_id"],
        recovery_channel=row["recovery_channel"], recovery_txn_type=row["recovery_txn_type"],
        recovery_failed_at=when("recovery_failed_at"),
        recovery_failed_terminal_id=row["recovery_failed_terminal_id"],
        decided_at=when("decided_at"), follow_up=row["follow_up"] == 1)  # 2: not sent


class RecoveryQueries(StoreConnection):
    """The recovery watch in :class:`~monitor.alerts.store.AlertStore`: reads and decisions."""

    def recovery_of(self, alert_id: str) -> Recovery | None:
        """The alert's recovery watch, ``None`` without one (no window, or before schema 8)."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM alert_recoveries WHERE alert_id = ?",
                                     (alert_id,)).fetchone()
        return None if row is None else _recovery(row)

    def recoveries_of(self, alert_ids: Sequence[str]) -> dict[str, Recovery]:
        """The recovery watches of these alerts, by alert ID (alerts without one are left out).

        Args:
            alert_ids: any number of alert IDs (read 500 at a time).
        """
        ids = sorted(set(alert_ids))
        found: dict[str, Recovery] = {}
        for start in range(0, len(ids), _MAX_IDS):
            chunk = ids[start:start + _MAX_IDS]
            with self._lock:
                rows = self._conn.execute(
                    "SELECT * FROM alert_recoveries WHERE alert_id IN "
                    f"({', '.join('?' * len(chunk))})",
                    chunk).fetchall()
            found.update((row["alert_id"], _recovery(row)) for row in rows)
        return found

    def watching_recoveries(self, customer_ids: Sequence[str] | None = None, *,
                            recovered_since: datetime | None = None) -> list[Recovery]:
        """Every watch still ``watching`` (the VIP alerts of about the last window), by deadline.

        Args:
            customer_ids: only these clients' watches (read 500 clients at a time);
                ``None``: every client's.
            recovered_since: also the ``recovered`` watches whose deadline is at or after
                this time (an earlier approval may still replace theirs); ``None``: none.
        """
        status = "status = 'watching'"
        args: list[str] = []
        if recovered_since is not None:
            status = "(status = 'watching' OR (status = 'recovered' AND deadline >= ?))"
            args = [utc_text(recovered_since)]
        chunks: list[list[str] | None] = [None]
        if customer_ids is not None:
            ids = sorted(set(customer_ids))
            chunks = [ids[i:i + _MAX_IDS] for i in range(0, len(ids), _MAX_IDS)]
        found: list[Recovery] = []
        for chunk in chunks:
            where = status
            if chunk is not None:
                where += f" AND customer_id IN ({', '.join('?' * len(chunk))})"
            with self._lock:
                rows = self._conn.execute(f"SELECT * FROM alert_recoveries WHERE {where}",
                                          [*args, *(chunk or ())]).fetchall()
            found += [_recovery(row) for row in rows]
        return sorted(found, key=lambda r: (r.window_ends_at, r.alert_id))

    def recovery_kinds(self, alert_ids: Sequence[str]) -> list[tuple[str, str, str, datetime, str]]:
        """Every kind that failed in these alerts: ``(alert_id, channel, txn_type, first failure, its terminal)``.

        Args:
            alert_ids: any number of alert IDs (read 500 at a time).
        """
        ids = sorted(set(alert_ids))
        found: list[tuple[str, str, str, datetime, str]] = []
        for start in range(0, len(ids), _MAX_IDS):
            chunk = ids[start:start + _MAX_IDS]
            with self._lock:
                rows = self._conn.execute(
                    "SELECT alert_id, channel, txn_type, first_failed_at, failed_terminal_id "
                    "FROM alert_recovery_kinds "
                    f"WHERE alert_id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
            found += [(row["alert_id"], row["channel"], row["txn_type"],
                       parse_utc(row["first_failed_at"]), row["failed_terminal_id"]) for row in rows]
        return sorted(found)

    def open_watch_kinds(self, customer_ids: Sequence[str] | None = None, *,
                         recovered_since: datetime | None) -> list[WatchKind]:
        """Every kind of the ``watching`` watches, and of the recent ``recovered`` ones.

        What :class:`~monitor.pipeline.recovery.RecoveryWatch` matches a batch with: the
        open watches are the VIP alerts of about the last window, whoever wrote them
        (every instance's).

        Args:
            customer_ids: only these clients' watches (read 500 clients at a time);
                ``None``: every client's, in one query with no client list.
            recovered_since: also the ``recovered`` watches whose deadline is at or after
                this time (aware; an earlier approval may still replace theirs); ``None``:
                none.

        Returns:
            One :class:`WatchKind` per watch and kind, in no particular order.
        """
        where = "r.status = 'watching'"
        args: list[str] = []
        if recovered_since is not None:
            where = "(r.status = 'watching' OR (r.status = 'recovered' AND r.deadline >= ?))"
            args = [utc_text(recovered_since)]
        chunks: list[list[str] | None] = [None]
        if customer_ids is not None:
            ids = sorted(set(customer_ids))
            chunks = [ids[i:i + _MAX_IDS] for i in range(0, len(ids), _MAX_IDS)]
        rows: list[Row] = []
        for chunk in chunks:
            query = f"{_OPEN_KINDS} WHERE {where}"
            if chunk is not None:
                query += f" AND r.customer_id IN ({', '.join('?' * len(chunk))})"
            with self._lock:
                rows += self._conn.execute(query, [*args, *(chunk or ())]).fetchall()
        parse = datetime.fromisoformat  # parse_utc, without a call per time
        return [WatchKind(row["alert_id"], row["customer_id"], row["status"] == "watching",
                          row["channel"], row["txn_type"], parse(row["first_failed_at"]),
                          parse(row["deadline"]), row["failed_terminal_id"],
                          parse(row["recovered_at"]) if row["recovered_at"] else None,
                          row["recovery_event_id"])
                for row in rows]

    def watching_extent(self) -> tuple[int, datetime | None]:
        """How many watches are ``watching``, and their earliest deadline (``None``: none); one probe."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) AS watching, min(deadline) AS deadline FROM alert_recoveries "
                "WHERE status = 'watching'").fetchone()
        if row is None or row["deadline"] is None:
            return 0, None
        return int(row["watching"]), parse_utc(row["deadline"])

    def earliest_watch_deadline(self) -> datetime | None:
        """The earliest deadline of the watches still ``watching`` (``None``: none)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT min(deadline) AS deadline FROM alert_recoveries WHERE status = 'watching'"
            ).fetchone()
        return None if row is None or row["deadline"] is None else parse_utc(row["deadline"])

    @retried
    def mark_recovered(self, matches: Sequence[RecoveryMatch], *, now: datetime) -> list[Recovery]:
        """Record the approvals that recover watches; the earliest approval of a watch wins.

        A watch takes a match while it is ``watching``, or when it is ``recovered`` by a
        later approval (another instance matched a later one first: the earlier one
        replaces it, the decision time stays; of two at the same microsecond, the lower
        event ID wins, as within one batch). An abandoned watch stays abandoned.

        Args:
            matches: at most one per alert (the earliest approval this instance knows).
            now: the decision's wall-clock time (aware).

        Returns:
            The watches this call moved from ``watching`` to ``recovered`` (the decisions
            to count), as they are after the call.
        """
        if not matches:
            return []
        stamp = utc_text(now)
        decided: list[str] = []
        ordered = sorted(matches, key=lambda m: m.alert_id)  # one lock order for every instance
        with self._transaction() as conn:
            for match in ordered:
                row = conn.execute(
                    "SELECT status FROM alert_recoveries WHERE alert_id = ?" + conn.for_update,
                    (match.alert_id,)).fetchone()
                if row is None or row["status"] == "abandoned":
                    continue
                at = utc_text(match.recovered_at)
                changed = conn.execute(
                    """UPDATE alert_recoveries SET status = 'recovered', recovered_at = ?,
                        recovery_event_id = ?, recovery_terminal_id = ?, recovery_merchant_id = ?,
                        recovery_channel = ?, recovery_txn_type = ?, recovery_failed_at = ?,
                        recovery_failed_terminal_id = ?,
                        decided_at = CASE WHEN decided_at IS NULL THEN ? ELSE decided_at END
                    WHERE alert_id = ? AND (status = 'watching'
                        OR (status = 'recovered' AND (recovered_at > ?
                            OR (recovered_at = ? AND recovery_event_id > ?))))""",
                    (at, match.event_id, match.terminal_id, match.merchant_id, match.channel,
                     match.txn_type, utc_text(match.failed_at) if match.failed_at else None,
                     match.failed_terminal_id, stamp,
                     match.alert_id, at, at, match.event_id)).rowcount
                if changed and row["status"] == "watching":
                    decided.append(match.alert_id)
            rows = self._read_many(conn, decided)
        return [rows[alert_id] for alert_id in decided]

    @retried
    def abandon_watches(self, through: datetime, *, now: datetime) -> list[Recovery]:
        """Mark abandoned every watch whose deadline event time has passed.

        Args:
            through: the event time every partition has passed (a watermark, aware): a
                watch whose deadline is before it is abandoned.
            now: the decision's wall-clock time (aware).

        Returns:
            The watches this call abandoned (the decisions to count).
        """
        with self._transaction() as conn:
            rows = conn.execute(
                """UPDATE alert_recoveries SET status = 'abandoned', decided_at = ?
                WHERE status = 'watching' AND deadline < ? RETURNING *""",
                (utc_text(now), utc_text(through))).fetchall()
        found = [_recovery(row) for row in rows]
        return sorted(found, key=lambda r: (r.window_ends_at, r.alert_id))

    def fleet_watermark(self, topic: str, *, lateness_seconds: float,
                        stalled_seconds: float) -> datetime | None:
        """The event time every partition of ``topic`` has passed, from the scale-out progress rows.

        PostgreSQL with ``alerting.scale_out`` only (``fleet_progress`` of
        :mod:`monitor.alerts.store.fleet_counts`): each partition's latest event time
        (the topic's latest for one read to its end) minus the lateness; a partition
        that has not progressed for ``stalled_seconds`` (not caught up) holds nothing
        back; one with nothing read yet holds everything back.

        Returns:
            The minimum over the partitions, ``None`` when there is no progress yet.
        """
        with self._lock:
            rows = self._conn.execute(
                """SELECT latest_us, caught_up, extract(epoch FROM now() - progressed_at) AS idle,
                    max(latest_us) OVER () AS leader, partitions
                FROM fleet_progress WHERE topic = ?""", (topic,)).fetchall()
        if not rows or len(rows) < max(int(row["partitions"]) for row in rows):
            return None
        holding: list[int] = []
        for row in rows:
            if row["caught_up"]:
                if row["leader"] is not None:
                    holding.append(int(row["leader"]))
            elif float(row["idle"]) >= stalled_seconds:
                continue
            elif row["latest_us"] is None:
                return None
            else:
                holding.append(int(row["latest_us"]))
        if not holding:
            return None
        us = min(holding) - int(lateness_seconds * 1_000_000)
        return datetime.fromtimestamp(us / 1_000_000, tz=UTC)

    @staticmethod
    def _read_many(conn: Database, alert_ids: Sequence[str]) -> dict[str, Recovery]:
        if not alert_ids:
            return {}
        rows = conn.execute(
            f"SELECT * FROM alert_recoveries WHERE alert_id IN ({', '.join('?' * len(alert_ids))})",
            list(alert_ids)).fetchall()
        return {row["alert_id"]: _recovery(row) for row in rows}
