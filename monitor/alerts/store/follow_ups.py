"""The alert store's recovery follow-ups: one short message per decided recovery watch, queued once.

A part of :class:`~monitor.alerts.store.AlertStore`. The recovery watch (schema 8,
``alert_recoveries``) follows a VIP client after a failure alert until it is
``recovered`` or ``abandoned``; the watch's writer sets ``status`` and ``decided_at``.
This part turns each decided watch into at most one follow-up message to the alert's
manager (``rf-`` + the alert ID's 20 characters, :func:`monitor.ids.follow_up_id_for`),
rendered at send time by :mod:`monitor.alerts.messages.recovery`.

``alert_recoveries.follow_up`` says what was done, and is written once:

* ``0``: not yet looked at (a watch still ``watching``, or decided a moment ago);
* ``1``: queued: outbox rows to the manager's first route for the alert's severity
  and to the recording sinks (``console``, ``jsonl``; never ``alertmanager``, which pages);
* ``2``: not sent: the manager did not opt in (registry ``recovery_follow_up``), is
  no longer in the registry, or no configured channel reaches them.

Once only, across instances: one transaction reads the decided rows still at ``0``,
and for each one sets its ``follow_up`` with ``UPDATE ... WHERE alert_id = ? AND
follow_up = 0`` and queues the outbox rows only when that update changed the row. A
second caller (another instance, the watch's writer right after a decision) finds the
row already set — on PostgreSQL it waits for the first one's row lock, then reads the
committed value — and queues nothing. The outbox rows are unique on
``(alert_id, channel, recipient_id)`` besides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from monitor.alerts.routing import RECORD_SINKS, channels_for, is_person_channel
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database, Row
from monitor.alerts.store.rows import alert_from_row, parse_utc, scrubbed, utc_text
from monitor.domain import Alert, Manager
from monitor.ids import follow_up_alert_id, follow_up_id_for

__all__ = ["FOLLOW_UP_NOT_SENT", "FOLLOW_UP_QUEUED", "FollowUpQueries", "RecoveryWatch",
           "WatchStatus"]

#: ``alert_recoveries.follow_up`` values (0: not looked at yet).
FOLLOW_UP_QUEUED: Final = 1
FOLLOW_UP_NOT_SENT: Final = 2

# Decided watches handled per call: a backlog drains over a few runs of the job.
_BATCH: Final = 200

WatchStatus = Literal["watching", "recovered", "abandoned"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryWatch:
    """One alert's recovery watch as the follow-up and the workspace show it.

    Attributes:
        alert: the alert (no deliveries: ``status`` reads ``unrouted``).
        status: ``watching``, ``recovered`` or ``abandoned``.
        channel: the kind of transaction watched: ``ATM``, ``POS`` or ``ECOM``...
        txn_type: ... and its type (``withdrawal``, ``purchase``...).
        failed_terminal_id: where the alert's failures happened (its first failure's terminal).
        failed_city: that terminal's city as the failure reported it, ``None`` if unknown.
        first_failed_at: the alert's first failure (UTC).
        last_failed_at: its last failure (UTC).
        deadline: when the watch gives up: no recovery by then is ``abandoned`` (UTC).
        recovered_at: the approved transaction's time (UTC), ``None`` unless recovered.
        recovery_terminal_id: its terminal, ``None`` unless recovered.
        recovery_merchant_id: its merchant, ``None`` if none or not recovered.
        decided_at: when the watch was decided (UTC), ``None`` while watching.
        follow_up: 0 (not looked at), 1 (queued), 2 (not sent).
    """

    alert: Alert
    status: WatchStatus
    channel: str
    txn_type: str
    failed_terminal_id: str
    failed_city: str | None
    first_failed_at: datetime
    last_failed_at: datetime
    deadline: datetime
    recovered_at: datetime | None
    recovery_terminal_id: str | None
    recovery_merchant_id: str | None
    decided_at: datetime | None
    follow_up: int

    @property
    def same_terminal(self) -> bool:
        """Whether the client recovered at the terminal that failed them."""
        return self.recovery_terminal_id == self.failed_terminal_id

    @property
    def recovery_seconds(self) -> float | None:
        """Seconds from the last failure before the recovery to it; ``None`` unless recovered."""
        if self.recovered_at is None:
            return None
        last = self.last_failed_at
        base = last if self.recovered_at >= last else self.first_failed_at
        return max(0.0, (self.recovered_at - base).total_seconds())


class FollowUpQueries(StoreConnection):
    """The recovery follow-ups of :class:`~monitor.alerts.store.AlertStore`."""

    @retried
    def queue_recovery_follow_ups(
        self,
        now: datetime,
        *,
        managers: Mapping[str, Manager],
        channels: Sequence[str] = ("email", "webhook"),
        sinks: Sequence[str] = (),
    ) -> int:
        """Queue the follow-up of every decided recovery watch not looked at yet, exactly once.

        In one write transaction, for each decided watch whose ``follow_up`` is 0
        (oldest decision first, at most 200 a call): the manager as the registry knows
        them now; when they opted in (``recovery_follow_up``) and a configured channel
        reaches them, one outbox row to their first route for the alert's severity
        (:func:`monitor.alerts.routing.channels_for`) plus one per recording sink, due
        at ``now``, and ``follow_up = 1``; otherwise ``follow_up = 2`` and no row. A
        row another caller set first is left alone.

        Args:
            now: the time of the pass (aware); the rows are due then.
            managers: the current registry's managers by ID.
            channels: the manager channels that are configured (``email``, ``webhook``,
                ``apprise``).
            sinks: the global sinks configured; only ``console`` and ``jsonl`` get it.

        Returns:
            How many follow-ups this call queued (``follow_up`` set to 1).
        """
        stamp = utc_text(now)
        queued = 0
        with self._transaction() as conn:
            rows = conn.execute(
                """SELECT r.alert_id, r.manager_id, a.severity FROM alert_recoveries r
                JOIN alerts a ON a.alert_id = r.alert_id
                WHERE r.follow_up = 0 AND r.status != 'watching'
                ORDER BY r.decided_at, r.alert_id LIMIT ?""", (_BATCH,)).fetchall()
            for row in rows:
                manager = managers.get(row["manager_id"])
                routes = ([route.channel
                           for route in channels_for(manager, row["severity"], channels)
                           if is_person_channel(route.channel)]
                          if manager is not None and manager.recovery_follow_up else [])
                value = FOLLOW_UP_QUEUED if routes else FOLLOW_UP_NOT_SENT
                if not conn.execute(
                        """UPDATE alert_recoveries SET follow_up = ?
                        WHERE alert_id = ? AND follow_up = 0""",
                        (value, row["alert_id"])).rowcount:
                    continue  # another caller handled it
                if manager is None or not routes:
                    continue
                follow_up_id = follow_up_id_for(row["alert_id"])
                _enqueue(conn, follow_up_id, routes[0], manager, stamp)
                for sink in sinks:
                    if sink in RECORD_SINKS:
                        _enqueue(conn, follow_up_id, sink, None, stamp)
                queued += 1
        return queued

    def recovery_watch(self, alert_id: str) -> RecoveryWatch | None:
        """An alert's recovery watch, ``None`` when it has none.

        ``alert_id`` may be the alert's (``al-...``) or its follow-up's (``rf-...``).
        """
        if alert_id.startswith("rf-"):
            alert_id = follow_up_alert_id(alert_id)
        return self.recovery_watches([alert_id]).get(alert_id)

    def recovery_watches(self, alert_ids: Sequence[str]) -> dict[str, RecoveryWatch]:
        """The recovery watches of some alerts, by alert ID (alerts without one are left out)."""
        if not alert_ids:
            return {}
        found: dict[str, RecoveryWatch] = {}
        with self._lock:
            for start in range(0, len(alert_ids), 500):  # bounded IN lists
                chunk = list(alert_ids[start:start + 500])
                marks = ", ".join("?" for _ in chunk)
                rows = self._conn.execute(
                    f"""SELECT r.*, a.*, r.channel AS watched_channel, (
                        SELECT e.city FROM alert_events e
                        WHERE e.alert_id = r.alert_id AND e.terminal_id = r.failed_terminal_id
                        ORDER BY e.occurred_at LIMIT 1) AS failed_city
                    FROM alert_recoveries r JOIN alerts a ON a.alert_id = r.alert_id
                    WHERE r.alert_id IN ({marks})""", chunk).fetchall()
                found.update((row["alert_id"], _watch_from_row(row)) for row in rows)
        return found


def _enqueue(conn: Database, follow_up_id: str, channel: str, manager: Manager | None,
             stamp: str) -> None:
    """One outbox row of a follow-up: to ``manager``, or to a sink (``manager`` ``None``)."""
    if manager is None:
        conn.execute(
            """INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at,
                created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?)
            ON CONFLICT DO NOTHING""",
            (follow_up_id, channel, stamp, stamp, stamp))
        return
    conn.execute(
        """INSERT INTO deliveries
            (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at,
             recipient_id, recipient_name, recipient_email, recipient_webhook_url,
             recipient_timezone)
        VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
        (follow_up_id, channel, stamp, stamp, stamp, manager.manager_id, scrubbed(manager.name),
         manager.email, manager.webhook_url, manager.timezone))


def _maybe(value: str | None) -> datetime | None:
    return parse_utc(value) if value else None


def _watch_from_row(row: Row) -> RecoveryWatch:
    return RecoveryWatch(
        alert=alert_from_row(row, ()), status=row["status"], channel=row["watched_channel"],
        txn_type=row["txn_type"], failed_terminal_id=row["failed_terminal_id"],
        failed_city=row["failed_city"], first_failed_at=parse_utc(row["first_failed_at"]),
        last_failed_at=parse_utc(row["last_failed_at"]), deadline=parse_utc(row["deadline"]),
        recovered_at=_maybe(row["recovered_at"]), recovery_terminal_id=row["recovery_terminal_id"],
        recovery_merchant_id=row["recovery_merchant_id"], decided_at=_maybe(row["decided_at"]),
        follow_up=int(row["follow_up"]))
