"""What the fast-correction report (``cardmon report``) reads: a period's failures and alerts.

A part of :class:`~monitor.alerts.store.AlertStore` that only reads, for
:mod:`monitor.report`. Two reads, both over a period ``[since, until)`` of event time and,
optionally, the alerts of some managers only (``alerts.manager_id``: the manager of the
client when the alert was raised):

- :meth:`ReportQueries.report_failures`: every VIP failure (``alert_events`` row) that
  occurred in the period, with its outcome class and channel;
- :meth:`ReportQueries.report_alerts`: every alert whose **first** failure occurred in
  the period, with when it was recorded, first acknowledged and first resolved with an
  outcome that reached the client (the same instants as the export's
  ``time_to_acknowledge_seconds`` and ``time_to_first_contact_seconds``), the outcome of
  its resolution, and the recovery watch's status (``alert_recoveries``, schema 8).

Neither returns a client name nor a card: the report counts per manager, not per client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from monitor.alerts.states import CONTACT_OUTCOMES
from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.rows import parse_utc, utc_text

__all__ = ["ReportAlert", "ReportFailure", "ReportQueries"]

# The most managers one query filters on (a larger team is read in several; SQL
# parameters stay well under any limit).
_MAX_MANAGERS: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFailure:
    """One VIP failure of the period (:meth:`ReportQueries.report_failures`).

    Attributes:
        alert_id: the alert it belongs to.
        manager_id: the alert's manager (when it was raised).
        occurred_at: when it happened (event time, UTC).
        outcome: its outcome class (``customer``, ``technical``, ``terminal``...).
        channel: ``ATM`` or ``POS``.
    """

    alert_id: str
    manager_id: str
    occurred_at: datetime
    outcome: str
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportAlert:
    """One alert whose first failure fell in the period (:meth:`ReportQueries.report_alerts`).

    Attributes:
        alert_id: the alert.
        manager_id: its manager (when it was raised).
        manager_name: that manager's name, as recorded on the alert.
        first_event_at: its first failure (event time, UTC).
        created_at: when cardmon recorded it (UTC): the start of both times below.
        state: its lifecycle state now (``open``, ``notified``, ``acknowledged``, ``resolved``,
            ``failed``).
        acknowledged_at: its first acknowledgement, ``None`` if never.
        contacted_at: its first resolution whose outcome reached the client
            (:data:`~monitor.alerts.states.CONTACT_OUTCOMES`), ``None`` if none.
        resolved: whether it was resolved.
        resolution_outcome: the outcome its resolution gave, ``None`` if unresolved or
            resolved with a note only.
        recovery: the recovery watch's status (``watching``, ``recovered``, ``abandoned``),
            ``None`` when the alert was never watched.
    """

    alert_id: str
    manager_id: str
    manager_name: str
    first_event_at: datetime
    created_at: datetime
    state: str
    acknowledged_at: datetime | None
    contacted_at: datetime | None
    resolved: bool
    resolution_outcome: str | None
    recovery: str | None


def _manager_chunks(
    column: str, manager_ids: Sequence[str] | None
) -> list[tuple[str, list[str]]]:
    """``(SQL clause, its parameters)`` per query: every manager once, 500 at a time."""
    if manager_ids is None:
        return [("", [])]
    ids = sorted(set(manager_ids))
    if not ids:
        return [(" AND 1 = 0", [])]
    chunks = [ids[i : i + _MAX_MANAGERS] for i in range(0, len(ids), _MAX_MANAGERS)]
    return [(f" AND {column} IN ({', '.join('?' * len(chunk))})", chunk) for chunk in chunks]


class ReportQueries(StoreConnection):
    """The report's reads from :class:`~monitor.alerts.store.AlertStore`."""

    def report_failures(
        self, *, since: datetime, until: datetime, manager_ids: Sequence[str] | None = None
    ) -> list[ReportFailure]:
        """Return the VIP failures that occurred in ``[since, until)``, oldest first.

        Args:
            since: the period's start (aware, inclusive, event time).
            until: the period's end (aware, exclusive).
            manager_ids: only the alerts of these managers (any number, read 500 at a
                time); ``None``: all.

        Raises:
            ValueError: a naive time.
        """
        rows = []
        with self._lock:
            for clause, ids in _manager_chunks("a.manager_id", manager_ids):
                rows += self._conn.execute(
                    "SELECT e.event_id, e.alert_id, a.manager_id, e.occurred_at, e.outcome, "
                    "e.channel FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id "
                    f"WHERE e.occurred_at >= ? AND e.occurred_at < ?{clause} "
                    "ORDER BY e.occurred_at, e.event_id",
                    (utc_text(since), utc_text(until), *ids),
                ).fetchall()
        rows.sort(key=lambda row: (row["occurred_at"], row["event_id"]))
        return [
            ReportFailure(
                alert_id=row["alert_id"],
                manager_id=row["manager_id"],
                occurred_at=parse_utc(row["occurred_at"]),
                outcome=row["outcome"],
                channel=row["channel"],
            )
            for row in rows
        ]

    def report_alerts(
        self, *, since: datetime, until: datetime, manager_ids: Sequence[str] | None = None
    ) -> list[ReportAlert]:
        """Return the alerts whose first failure occurred in ``[since, until)``, oldest first.

        Args:
            since: the period's start (aware, inclusive, event time).
            until: the period's end (aware, exclusive).
            manager_ids: only these managers' alerts (any number, read 500 at a time);
                ``None``: all.

        Raises:
            ValueError: a naive time.
        """
        contact = sorted(CONTACT_OUTCOMES)
        contact_marks = ", ".join("?" * len(contact))
        rows = []
        with self._lock:
            for clause, ids in _manager_chunks("a.manager_id", manager_ids):
                rows += self._conn.execute(
                    "SELECT a.alert_id, a.manager_id, a.manager_name, a.first_event_at, "
                    "a.created_at, a.state, r.status AS recovery, "
                    "(SELECT min(h.at) FROM alert_history h WHERE h.alert_id = a.alert_id "
                    " AND h.action = 'acknowledged') AS acknowledged_at, "
                    "(SELECT min(h.at) FROM alert_history h WHERE h.alert_id = a.alert_id "
                    f" AND h.action = 'resolved' AND h.outcome IN ({contact_marks})) "
                    " AS contacted_at, "
                    "(SELECT count(*) FROM alert_history h WHERE h.alert_id = a.alert_id "
                    " AND h.action = 'resolved') AS resolutions, "
                    "(SELECT h.outcome FROM alert_history h WHERE h.alert_id = a.alert_id "
                    " AND h.action = 'resolved' ORDER BY h.at, h.history_id LIMIT 1) "
                    "AS resolution_outcome "
                    "FROM alerts a LEFT JOIN alert_recoveries r ON r.alert_id = a.alert_id "
                    f"WHERE a.first_event_at >= ? AND a.first_event_at < ?{clause} "
                    "ORDER BY a.first_event_at, a.alert_id",
                    (*contact, utc_text(since), utc_text(until), *ids),
                ).fetchall()
        rows.sort(key=lambda row: (row["first_event_at"], row["alert_id"]))
        return [
            ReportAlert(
                alert_id=row["alert_id"],
                manager_id=row["manager_id"],
                manager_name=row["manager_name"],
                first_event_at=parse_utc(row["first_event_at"]),
                created_at=parse_utc(row["created_at"]),
                state=row["state"],
                acknowledged_at=parse_utc(row["acknowledged_at"])
                if row["acknowledged_at"]
                else None,
                contacted_at=parse_utc(row["contacted_at"]) if row["contacted_at"] else None,
                resolved=int(row["resolutions"]) > 0,
                resolution_outcome=row["resolution_outcome"],
                recovery=row["recovery"],
            )
            for row in rows
        ]
