"""Reading around one alert: a client's recent alerts, and what else failed at a terminal.

A part of :class:`~monitor.alerts.store.AlertStore` that only reads, for the managers'
workspace (the alert page and the client page). Both reads use existing indexes:
``alerts_by_customer`` (customer, window start) and ``alert_events_by_time``.

What the store knows of a terminal is the VIP failures it recorded there (the full
transaction stream's terminal health lives in Prometheus): "four other clients failed
at this ATM in the same half hour" is the evidence a manager needs to tell a card
problem from a terminal fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from monitor.alerts.states import AlertState
from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.rows import (
    alert_from_row,
    delivery_from_row,
    event_from_row,
    parse_utc,
    utc_text,
)
from monitor.domain import Alert, AlertEvent, Delivery

__all__ = ["ClientHistory", "ClientQueries", "TerminalActivity"]

#: The most alerts a client's history returns (newest first); a client with more in the
#: period is a case for the export, not for a page.
CLIENT_ALERT_LIMIT = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHistory:
    """A client's alerts since a time, newest first, with their states and failed transactions.

    Attributes:
        customer_id: the bank's client identifier.
        alerts: the client's alerts whose window started at or after ``since``, newest
            first (at most :data:`CLIENT_ALERT_LIMIT`), with their deliveries.
        states: ``alert_id`` → lifecycle state.
        events: ``alert_id`` → its failed transactions, oldest first.
        truncated: more alerts than :data:`CLIENT_ALERT_LIMIT` started in the period.
    """

    customer_id: str
    alerts: tuple[Alert, ...]
    states: dict[str, AlertState]
    events: dict[str, tuple[AlertEvent, ...]]
    truncated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalActivity:
    """The VIP failures the store recorded at one terminal within a time range.

    Attributes:
        terminal_id: the terminal (ISO 8583 field 41).
        failures: failed transactions recorded there (every VIP client's).
        clients: distinct clients among them.
        response_codes: response code (or outcome class where none) → failures, most first.
        first_at: the earliest failure (event time, UTC).
        last_at: the latest failure (event time, UTC).
    """

    terminal_id: str
    failures: int
    clients: int
    response_codes: tuple[tuple[str, int], ...] = field(default=())
    first_at: datetime | None = None
    last_at: datetime | None = None


class ClientQueries(StoreConnection):
    """A client's history and a terminal's recorded failures, read from :class:`~monitor.alerts.store.AlertStore`."""

    def client_history(self, customer_id: str, *, since: datetime) -> ClientHistory:
        """Return ``customer_id``'s alerts whose window started at or after ``since``.

        Args:
            customer_id: the client.
            since: the start of the period (aware), e.g. 90 days ago.

        Returns:
            A :class:`ClientHistory`; empty for an unknown client.

        Raises:
            ValueError: ``since`` is naive.
        """
        start = utc_text(since)
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alerts WHERE customer_id = ? AND window_start >= ? "
                "ORDER BY window_start DESC, alert_id DESC LIMIT ?",
                (customer_id, start, CLIENT_ALERT_LIMIT + 1)).fetchall()
            page = rows[:CLIENT_ALERT_LIMIT]
            ids = [row["alert_id"] for row in page]
            marks = ", ".join("?" * len(ids))
            deliveries = self._conn.execute(
                f"SELECT * FROM deliveries WHERE alert_id IN ({marks}) ORDER BY delivery_id",
                ids).fetchall() if ids else []
            event_rows = self._conn.execute(
                f"SELECT * FROM alert_events WHERE alert_id IN ({marks}) "
                "ORDER BY occurred_at, event_id", ids).fetchall() if ids else []
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for row in deliveries:
            by_alert.setdefault(row["alert_id"], []).append(delivery_from_row(row))
        events: dict[str, list[AlertEvent]] = {alert_id: [] for alert_id in ids}  # <alert_id: events>
        for row in event_rows:
            events[row["alert_id"]].append(event_from_row(row))
        return ClientHistory(
            customer_id=customer_id,
            alerts=tuple(alert_from_row(row, tuple(by_alert.get(row["alert_id"], ()))) for row in page),
            states={row["alert_id"]: row["state"] for row in page},
            events={alert_id: tuple(found) for alert_id, found in events.items()},
            truncated=len(rows) > CLIENT_ALERT_LIMIT)

    def terminal_activity(self, terminal_ids: Iterable[str], *, start: datetime,
                          end: datetime) -> dict[str, TerminalActivity]:
        """Return the VIP failures recorded at each terminal with ``start <= occurred_at < end``.

        Args:
            terminal_ids: the terminals (duplicates are fine).
            start: the range's start (aware, inclusive).
            end: the range's end (aware, exclusive).

        Returns:
            ``terminal_id`` → :class:`TerminalActivity`, for every asked terminal (zero
            failures where none was recorded).

        Raises:
            ValueError: a naive ``start`` or ``end``.
        """
        wanted = sorted(set(terminal_ids))
        if not wanted:
            return {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT e.terminal_id, e.occurred_at, e.response_code, e.outcome, a.customer_id "
                "FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id "
                f"WHERE e.occurred_at >= ? AND e.occurred_at < ? "
                f"AND e.terminal_id IN ({', '.join('?' * len(wanted))})",
                (utc_text(start), utc_text(end), *wanted)).fetchall()
        found: dict[str, TerminalActivity] = {}
        for terminal_id in wanted:
            mine = [row for row in rows if row["terminal_id"] == terminal_id]
            if not mine:
                found[terminal_id] = TerminalActivity(terminal_id=terminal_id, failures=0, clients=0)
                continue
            codes = Counter(row["response_code"] or row["outcome"] for row in mine)
            times = sorted(parse_utc(row["occurred_at"]) for row in mine)
            found[terminal_id] = TerminalActivity(
                terminal_id=terminal_id, failures=len(mine),
                clients=len({row["customer_id"] for row in mine}),
                response_codes=tuple(sorted(codes.items(), key=lambda item: (-item[1], item[0]))),
                first_at=times[0], last_at=times[-1])
        return found
