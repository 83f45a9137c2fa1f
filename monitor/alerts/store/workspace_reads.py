"""Reading what the workspace's team and operations pages show: acknowledgements by manager, failing terminals.

A part of :class:`~monitor.alerts.store.AlertStore` that only reads. The team page of a
team lead asks :meth:`WorkspaceReads.acknowledgement_counts`; the operations' terminals
page asks :meth:`WorkspaceReads.terminal_failures`. Both read only what the store holds:
the VIP failures behind alerts, not every transaction (live terminal health is the
health book's, in the monitor's memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.rows import MAX_PAGE, parse_utc, utc_text

__all__ = ["AcknowledgementCounts", "TerminalFailures", "WorkspaceReads"]

# The states of an alert nobody has acknowledged yet.
_UNACKNOWLEDGED: Final = "('open', 'notified', 'failed')"
# The most managers one call reads (a team; SQL parameters stay well under any limit).
_MAX_MANAGERS: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class AcknowledgementCounts:
    """One manager's acknowledgements (:meth:`WorkspaceReads.acknowledgement_counts`).

    Attributes:
        manager_id: the manager (the alert's client's, when it was raised).
        unacknowledged: alerts in state ``open``, ``notified`` or ``failed``.
        oldest_unacknowledged_at: when the oldest of them was recorded (UTC), ``None`` if none.
        acknowledge_seconds: for each alert first acknowledged at or after ``since``, the
            seconds from its recording to that acknowledgement, in no particular order.
    """

    manager_id: str
    unacknowledged: int = 0
    oldest_unacknowledged_at: datetime | None = None
    acknowledge_seconds: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalFailures:
    """One terminal's VIP failures in the store (:meth:`WorkspaceReads.terminal_failures`).

    Attributes:
        terminal_id: the terminal.
        failures: VIP failures on it (alert events) in alerts recorded since ``since``.
        alerts: distinct alerts they belong to.
        clients: distinct clients they hit.
        last_failure_at: event time of the latest (UTC).
        merchant_id: the merchant of its latest failure, ``None`` if none was given.
        open_incident_id: its open terminal-scope incident, ``None`` if none.
    """

    terminal_id: str
    failures: int
    alerts: int
    clients: int
    last_failure_at: datetime
    merchant_id: str | None = None
    open_incident_id: str | None = None


class WorkspaceReads(StoreConnection):
    """The team and operations pages' reads of :class:`~monitor.alerts.store.AlertStore`."""

    def acknowledgement_counts(self, manager_ids: list[str] | tuple[str, ...], *,
                               since: datetime) -> dict[str, AcknowledgementCounts]:
        """Unacknowledged alerts and times to acknowledge, per manager.

        Args:
            manager_ids: the managers (at most 500); each gets an entry, zeros if none.
            since: acknowledgements at or after this time count (aware).

        Raises:
            ValueError: too many managers, or a naive ``since``.
        """
        if len(manager_ids) > _MAX_MANAGERS:
            raise ValueError(f"at most {_MAX_MANAGERS} managers")
        ids = sorted(set(manager_ids))
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        with self._lock:
            waiting = self._conn.execute(
                f"""SELECT manager_id, count(*) AS waiting, min(created_at) AS oldest FROM alerts
                WHERE manager_id IN ({marks}) AND state IN {_UNACKNOWLEDGED} GROUP BY manager_id""",
                ids).fetchall()
            acked = self._conn.execute(
                f"""SELECT a.manager_id, a.created_at, min(h.at) AS acked_at
                FROM alert_history h JOIN alerts a ON a.alert_id = h.alert_id
                WHERE h.action = 'acknowledged' AND a.manager_id IN ({marks})
                GROUP BY a.alert_id, a.manager_id, a.created_at
                HAVING min(h.at) >= ?""", (*ids, utc_text(since))).fetchall()
        seconds: dict[str, list[float]] = {}  # <manager_id: seconds to acknowledge, per alert>
        for row in acked:
            took = (parse_utc(row["acked_at"]) - parse_utc(row["created_at"])).total_seconds()
            seconds.setdefault(row["manager_id"], []).append(max(0.0, took))
        counts = {row["manager_id"]: (int(row["waiting"]), parse_utc(row["oldest"])) for row in waiting}
        return {m: AcknowledgementCounts(
                    manager_id=m, unacknowledged=counts.get(m, (0, None))[0],
                    oldest_unacknowledged_at=counts.get(m, (0, None))[1],
                    acknowledge_seconds=tuple(seconds.get(m, ())))
                for m in ids}

    def terminal_failures(self, *, since: datetime, limit: int = 200) -> list[TerminalFailures]:
        """Terminals with VIP failures in alerts recorded since ``since``, the most failures first.

        Args:
            since: alerts recorded at or after this time count (aware).
            limit: most terminals, 1–500.

        Raises:
            ValueError: a bad ``limit`` or a naive ``since``.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        with self._lock:
            rows = self._conn.execute(
                """SELECT e.terminal_id, count(*) AS failures, count(DISTINCT e.alert_id) AS alerts,
                    count(DISTINCT a.customer_id) AS clients, max(e.occurred_at) AS last_at
                FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id
                WHERE a.created_at >= ? GROUP BY e.terminal_id
                ORDER BY failures DESC, e.terminal_id LIMIT ?""", (utc_text(since), limit)).fetchall()
            ids = [row["terminal_id"] for row in rows]
            marks = ", ".join("?" * len(ids))
            merchants = self._conn.execute(
                f"""SELECT e.terminal_id, e.merchant_id FROM alert_events e
                JOIN alerts a ON a.alert_id = e.alert_id
                WHERE a.created_at >= ? AND e.terminal_id IN ({marks})
                ORDER BY e.occurred_at, e.event_id""", (utc_text(since), *ids)).fetchall() if ids else []
            incidents = self._conn.execute(
                f"""SELECT scope_key, incident_id FROM incidents WHERE scope = 'terminal'
                AND ended_at IS NULL AND scope_key IN ({marks})
                ORDER BY started_at, incident_id""", ids).fetchall() if ids else []
        merchant_of = {row["terminal_id"]: row["merchant_id"] for row in merchants}  # the latest wins
        incident_of = {row["scope_key"]: row["incident_id"] for row in incidents}
        return [TerminalFailures(terminal_id=row["terminal_id"], failures=int(row["failures"]),
                                 alerts=int(row["alerts"]), clients=int(row["clients"]),
                                 last_failure_at=parse_utc(row["last_at"]),
                                 merchant_id=merchant_of.get(row["terminal_id"]),
                                 open_incident_id=incident_of.get(row["terminal_id"]))
                for row in rows]
