"""The alert store's recovery follow-ups: one short message per decided recovery watch, queued once.

A part of :class:`~monitor.alerts.store.AlertStore`. The recovery watch (schema 8,
``alert_recoveries``, :mod:`~monitor.alerts.store.recoveries`) follows a VIP client after
a failure alert until it is ``recovered`` or ``abandoned``, and sets ``decided_at``.
This part turns each decided watch into at most one follow-up message to the alert's
manager (``rf-`` + the alert ID's 20 characters, :func:`monitor.ids.follow_up_id_for`),
rendered at send time by :mod:`monitor.alerts.messages.recovery`.

``alert_recoveries.follow_up`` says what was done, and is written once:

* ``0``: not yet looked at (a watch still ``watching``, or decided a moment ago);
* ``1``: queued: outbox rows to the manager's first route for the alert's severity
  and to the recording sinks (``console``, ``jsonl``; never ``alertmanager``, which pages);
* ``2``: not sent: the manager did not opt in (registry ``recovery_follow_up``), is
  no longer in the registry, or no configured channel reaches them; or the alert is
  late (stale events replayed: its manager was never paged, so no follow-up either).

Once only, across instances: one transaction reads the decided rows still at ``0``,
and for each one sets its ``follow_up`` with ``UPDATE ... WHERE alert_id = ? AND
follow_up = 0`` and queues the outbox rows only when that update changed the row. A
second caller (another instance, or the watch's code right after a decision) finds the
row already set — on PostgreSQL it waits for the first one's row lock, then reads the
committed value — and queues nothing. The outbox rows are unique on
``(alert_id, channel, recipient_id)`` besides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from monitor.alerts.preferences import delivery_time
from monitor.alerts.routing import RECORD_SINKS, channels_for, is_person_channel
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database
from monitor.alerts.store.rows import parse_utc, scrubbed, utc_text
from monitor.domain import Manager
from monitor.ids import follow_up_id_for

__all__ = ["FOLLOW_UP_NOT_SENT", "FOLLOW_UP_QUEUED", "FollowUpQueries"]

#: ``alert_recoveries.follow_up`` values (0: not looked at yet).
FOLLOW_UP_QUEUED: Final = 1
FOLLOW_UP_NOT_SENT: Final = 2

# Decided watches handled per call: a backlog drains over a few runs of the job.
_BATCH: Final = 200


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
        them now; when they opted in (``recovery_follow_up``), a configured channel
        reaches them, the alert is not late and not resolved (a manager who closed it
        needs no follow-up), one outbox row to their first route for the alert's
        severity (:func:`monitor.alerts.routing.channels_for`) plus one per recording
        sink, and ``follow_up = 1``; otherwise ``follow_up = 2`` and no row. A row
        another caller set first is left alone. The rows are due when the manager may
        be told at the alert's severity (quiet and working hours,
        :func:`monitor.alerts.preferences.delivery_time`) and never before the alert's
        own messages still waiting (storm control's hold, quiet hours): a follow-up
        never arrives before the alert it follows.

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
                """SELECT r.alert_id, r.manager_id, a.severity, a.late, a.state,
                    (SELECT max(d.next_attempt_at) FROM deliveries d
                     WHERE d.alert_id = r.alert_id AND d.status = 'pending') AS alert_due
                FROM alert_recoveries r JOIN alerts a ON a.alert_id = r.alert_id
                WHERE r.follow_up = 0 AND r.status != 'watching'
                ORDER BY r.decided_at, r.alert_id LIMIT ?""", (_BATCH,)).fetchall()
            for row in rows:
                manager = managers.get(row["manager_id"])
                routes = ([route.channel
                           for route in channels_for(manager, row["severity"], channels)
                           if is_person_channel(route.channel)]
                          if manager is not None and manager.recovery_follow_up
                          and not row["late"] and row["state"] != "resolved" else [])
                value = FOLLOW_UP_QUEUED if routes else FOLLOW_UP_NOT_SENT
                if not conn.execute(
                        """UPDATE alert_recoveries SET follow_up = ?
                        WHERE alert_id = ? AND follow_up = 0""",
                        (value, row["alert_id"])).rowcount:
                    continue  # another caller handled it
                if manager is None or not routes:
                    continue
                follow_up_id = follow_up_id_for(row["alert_id"])
                due = delivery_time(manager, row["severity"], now)
                if row["alert_due"] is not None:
                    due = max(due, parse_utc(row["alert_due"]))
                _enqueue(conn, follow_up_id, routes[0], manager, utc_text(due), stamp)
                for sink in sinks:
                    if sink in RECORD_SINKS:
                        _enqueue(conn, follow_up_id, sink, None, utc_text(due), stamp)
                queued += 1
        return queued


def _enqueue(conn: Database, follow_up_id: str, channel: str, manager: Manager | None,
             due: str, stamp: str) -> None:
    """One outbox row of a follow-up, due at ``due``: to ``manager``, or to a sink (``manager`` ``None``)."""
    if manager is None:
        conn.execute(
            """INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at,
                created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?)
            ON CONFLICT DO NOTHING""",
            (follow_up_id, channel, due, stamp, stamp))
        return
    conn.execute(
        """INSERT INTO deliveries
            (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at,
             recipient_id, recipient_name, recipient_email, recipient_webhook_url,
             recipient_timezone)
        VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
        (follow_up_id, channel, due, stamp, stamp, manager.manager_id, scrubbed(manager.name),
         manager.email, manager.webhook_url, manager.timezone))
