"""Reading the alert store's incidents: one incident, the list, an alert's incident, the notices.

The side of storm control that only reads (the API, the CLI, the notice renderer and
the metrics); what writes incidents is :mod:`monitor.alerts.store.incidents`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from monitor.alerts.states import AlertState
from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.db import Row
from monitor.alerts.store.rows import MAX_PAGE, alert_from_row, delivery_from_row, parse_utc
from monitor.domain import Alert, Delivery
from monitor.incidents.model import Incident, NoticeKind

__all__ = ["IncidentQueries", "StormCounts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StormCounts:
    """Storm control and the rate cap over the whole store (:meth:`AlertStore.storm_counts`).

    Attributes:
        incidents_opened: incidents ever recorded, by scope.
        incidents_open: incidents not ended, by scope.
        incidents_flapping: incidents marked flapping, by scope.
        notices_sent: incident notices the channels accepted, by kind (opened,
            update, resolved, escalated), one per channel.
        alerts_linked: alerts linked to an incident.
        alerts_merged: alerts whose own message was folded into an incident notice.
        alerts_capped: alerts held by the per-manager rate cap.
        summaries: rate-cap summaries claimed.
    """

    incidents_opened: dict[str, int]
    incidents_open: dict[str, int]
    incidents_flapping: dict[str, int]
    notices_sent: dict[str, int]
    alerts_linked: int
    alerts_merged: int
    alerts_capped: int
    summaries: int


class IncidentQueries(StoreConnection):
    """Incidents, their notices and storm-control counts of :class:`~monitor.alerts.store.AlertStore`."""

    def get_incident(self, incident_id: str) -> Incident | None:
        """Return one incident with its alert and manager counts, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                f"{_INCIDENT_SELECT} WHERE i.incident_id = ? GROUP BY i.incident_id",
                (incident_id,)).fetchone()
        return None if row is None else _incident(row)

    def list_incidents(self, *, open_only: bool = False, top_level: bool = False,
                       limit: int = 100) -> list[Incident]:
        """Return incidents, the latest start first.

        Args:
            open_only: only incidents that have not ended.
            top_level: leave out incidents held by a broader one (``parent_id`` set).
            limit: most incidents to return, 1–500.

        Raises:
            ValueError: a bad ``limit``.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        clauses = [c for c, wanted in (("i.ended_at IS NULL", open_only),
                                       ("i.parent_id IS NULL", top_level)) if wanted]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"""{_INCIDENT_SELECT} {where} GROUP BY i.incident_id
                ORDER BY i.started_at DESC, i.incident_id DESC LIMIT ?""", (limit,)).fetchall()
        return [_incident(row) for row in rows]

    def incident_of(self, alert_id: str) -> str | None:
        """The incident an alert is linked to, ``None`` if none."""
        with self._lock:
            row = self._conn.execute(
                "SELECT incident_id FROM incident_alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else row["incident_id"]

    def incident_notice(self, notice_id: str) -> tuple[str, str, NoticeKind, int, datetime] | None:
        """``(incident_id, manager_id, kind, seq, created_at)`` of a notice, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM incident_notices WHERE notice_id = ?", (notice_id,)).fetchone()
        if row is None:
            return None
        return row["incident_id"], row["manager_id"], row["kind"], row["seq"], parse_utc(row["created_at"])

    def incident_notice_created(self, incident_id: str, manager_id: str, seq: int) -> datetime | None:
        """When the ``seq``-th notice of an incident to a manager was created, ``None`` if never."""
        with self._lock:
            row = self._conn.execute(
                "SELECT created_at FROM incident_notices WHERE incident_id = ? AND manager_id = ? AND seq = ?",
                (incident_id, manager_id, seq)).fetchone()
        return None if row is None else parse_utc(row["created_at"])

    def incident_alerts(
        self, incident_id: str, manager_id: str | None = None
    ) -> list[tuple[Alert, AlertState, datetime]]:
        """Alerts linked to an incident (of one manager's clients if given), oldest first.

        Returns:
            ``(alert, lifecycle state, linked_at)`` triples; the alerts carry their deliveries.
        """
        clause, params = (("AND l.manager_id = ?", (incident_id, manager_id)) if manager_id
                          else ("", (incident_id,)))
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT a.*, l.linked_at FROM incident_alerts l JOIN alerts a ON a.alert_id = l.alert_id
                WHERE l.incident_id = ? {clause} ORDER BY a.first_event_at, a.alert_id""",
                params).fetchall()
            ids = [row["alert_id"] for row in rows]
            deliveries = self._conn.execute(
                f"SELECT * FROM deliveries WHERE alert_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY delivery_id", ids).fetchall() if ids else []
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for delivery_row in deliveries:
            by_alert.setdefault(delivery_row["alert_id"], []).append(delivery_from_row(delivery_row))
        return [(alert_from_row(row, tuple(by_alert.get(row["alert_id"], ()))), row["state"],
                 parse_utc(row["linked_at"])) for row in rows]

    def storm_counts(self) -> StormCounts:
        """What storm control and the rate cap did, counted over the whole store (for metrics)."""
        with self._lock:
            conn = self._conn
            incidents = conn.execute(
                """SELECT scope, count(*) AS opened,
                    sum(CASE WHEN ended_at IS NULL THEN 1 ELSE 0 END) AS still_open,
                    sum(CASE WHEN flapping = 1 THEN 1 ELSE 0 END) AS flapping
                FROM incidents GROUP BY scope""").fetchall()
            notices = conn.execute(
                """SELECT n.kind, count(*) AS sent FROM deliveries d
                JOIN incident_notices n ON n.notice_id = d.alert_id
                WHERE d.status = 'sent' GROUP BY n.kind""").fetchall()
            merged = conn.execute(
                "SELECT count(DISTINCT alert_id) FROM deliveries WHERE status = 'merged'").fetchone()[0]
            linked = conn.execute("SELECT count(*) FROM incident_alerts").fetchone()[0]
            capped = conn.execute("SELECT count(*) FROM alerts WHERE capped_at IS NOT NULL").fetchone()[0]
            summaries = conn.execute("SELECT count(*) FROM summaries").fetchone()[0]
        return StormCounts(
            incidents_opened={row["scope"]: int(row["opened"]) for row in incidents},
            incidents_open={row["scope"]: int(row["still_open"] or 0) for row in incidents},
            incidents_flapping={row["scope"]: int(row["flapping"] or 0) for row in incidents},
            notices_sent={row["kind"]: int(row["sent"]) for row in notices},
            alerts_linked=int(linked), alerts_merged=int(merged), alerts_capped=int(capped),
            summaries=int(summaries))


_INCIDENT_SELECT: Final = """SELECT i.*, count(l.alert_id) AS alert_count,
    count(DISTINCT l.manager_id) AS manager_count
    FROM incidents i LEFT JOIN incident_alerts l ON l.incident_id = i.incident_id"""


def _incident(row: Row) -> Incident:
    return Incident(
        incident_id=row["incident_id"], scope=row["scope"], scope_key=row["scope_key"],
        started_at=parse_utc(row["started_at"]), last_failure_at=parse_utc(row["last_failure_at"]),
        ended_at=parse_utc(row["ended_at"]) if row["ended_at"] else None, failures=row["failures"],
        cards=row["cards"], terminals=row["terminals"], relapses=row["relapses"],
        flapping=bool(row["flapping"]), note=row["note"], created_at=parse_utc(row["created_at"]),
        updated_at=parse_utc(row["updated_at"]), alert_count=row["alert_count"],
        manager_count=row["manager_count"], parent_id=row["parent_id"])
