"""Reading the alert store's alerts: one alert, all of them, a page, their events and recipients.

A part of :class:`~monitor.alerts.store.AlertStore` that only reads (the API, the CLI,
the renderers, the export). A page of :meth:`ReadQueries.find_alerts` is newest first
and continues from an opaque cursor.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.alerts.states import ALERT_STATES, AlertState
from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.rows import (
    MAX_PAGE,
    alert_from_row,
    delivery_from_row,
    event_from_row,
    parse_utc,
    utc_text,
)
from monitor.domain import Alert, AlertEvent, Delivery, Manager

__all__ = ["AlertPage", "ReadQueries"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPage:
    """One page of :meth:`AlertStore.find_alerts`.

    Attributes:
        alerts: the alerts, newest first, with their deliveries.
        states: ``alert_id`` → lifecycle state, for each alert of the page.
        next_cursor: pass it as ``cursor`` for the next page; ``None`` on the last one.
    """

    alerts: tuple[Alert, ...]
    states: dict[str, AlertState]
    next_cursor: str | None = None


class ReadQueries(StoreConnection):
    """Reading alerts, their events and their recipients from :class:`~monitor.alerts.store.AlertStore`."""

    def get_alert(self, alert_id: str) -> Alert | None:
        """Return one alert with its deliveries, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                return None
            deliveries = self._conn.execute(
                "SELECT * FROM deliveries WHERE alert_id = ? ORDER BY delivery_id", (alert_id,)
            ).fetchall()
        return alert_from_row(row, tuple(delivery_from_row(d) for d in deliveries))

    def list_alerts(self) -> list[Alert]:
        """Return every alert with its deliveries, oldest window first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alerts ORDER BY window_start, alert_id"
            ).fetchall()
            deliveries = self._conn.execute(
                "SELECT * FROM deliveries ORDER BY delivery_id"
            ).fetchall()
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for delivery_row in deliveries:
            by_alert.setdefault(delivery_row["alert_id"], []).append(delivery_from_row(delivery_row))
        return [alert_from_row(row, tuple(by_alert.get(row["alert_id"], ()))) for row in rows]

    def alert_events(self, alert_id: str) -> list[AlertEvent]:
        """Return an alert's events, oldest first (empty for an unknown alert)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alert_events WHERE alert_id = ? ORDER BY occurred_at, event_id",
                (alert_id,),
            ).fetchall()
        return [event_from_row(row) for row in rows]

    def find_alerts(
        self,
        *,
        state: AlertState | None = None,
        manager_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        late: bool | None = None,
        unroutable: bool | None = None,
    ) -> AlertPage:
        """Return one page of alerts, newest first, with their states and deliveries.

        Args:
            state: only alerts in this lifecycle state.
            manager_id: only alerts of this relationship manager (the client's own).
            since: only alerts recorded at or after this time (aware).
            late: ``True``: only late alerts (stale events, paged to nobody);
                ``False``: only the others; ``None``: both.
            unroutable: ``True``: only alerts no configured channel could route;
                ``False``: only the others; ``None``: both.
            limit: page size, 1–500.
            cursor: ``next_cursor`` of the previous page; ``None`` for the first page.

        Returns:
            An :class:`AlertPage`; ``next_cursor`` is ``None`` on the last page.

        Raises:
            ValueError: a bad ``limit``, ``cursor`` or ``state``, or a naive ``since``.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        if state is not None and state not in ALERT_STATES:
            raise ValueError(f"state must be one of {', '.join(ALERT_STATES)}")
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if manager_id is not None:
            clauses.append("manager_id = ?")
            params.append(manager_id)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(utc_text(since))
        for column, wanted in (("late", late), ("unroutable", unroutable)):
            if wanted is not None:
                clauses.append(f"{column} = ?")
                params.append(int(wanted))
        if cursor is not None:
            clauses.append("(created_at, alert_id) < (?, ?)")
            params.extend(_decode_cursor(cursor))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM alerts {where} ORDER BY created_at DESC, alert_id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
            page = rows[:limit]
            ids = [row["alert_id"] for row in page]
            deliveries = self._conn.execute(
                f"SELECT * FROM deliveries WHERE alert_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY delivery_id", ids,
            ).fetchall() if ids else []
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for delivery_row in deliveries:
            by_alert.setdefault(delivery_row["alert_id"], []).append(delivery_from_row(delivery_row))
        alerts = tuple(alert_from_row(row, tuple(by_alert.get(row["alert_id"], ()))) for row in page)
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = _encode_cursor(last["created_at"], last["alert_id"])
        return AlertPage(alerts=alerts, states={row["alert_id"]: row["state"] for row in page},
                         next_cursor=next_cursor)

    def delivery_recipient(self, delivery_id: int) -> Manager | None:
        """The manager a delivery goes to when it is not the alert's own, else ``None``.

        ``None`` means: the alert's manager (``Alert.manager``), or a sink.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,)).fetchone()
        if row is None or not row["recipient_id"]:
            return None
        return Manager(manager_id=row["recipient_id"], name=row["recipient_name"] or "",
                       email=row["recipient_email"], webhook_url=row["recipient_webhook_url"],
                       timezone=row["recipient_timezone"] or "UTC")

    def delivery_recipients(self, alert_id: str) -> dict[int, str]:
        """``delivery_id`` → manager ID for an alert's deliveries to another manager."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT delivery_id, recipient_id FROM deliveries "
                "WHERE alert_id = ? AND recipient_id != ''", (alert_id,),
            ).fetchall()
        return {row["delivery_id"]: row["recipient_id"] for row in rows}

    def alert_versions(self, manager_id: str, *, limit: int = 200) -> dict[str, str]:
        """What a manager's most recent alerts look like now, cheaply: ``alert_id`` → a version.

        The version (``"state|event_count|updated_at|recovery"``) changes whenever the
        alert's lifecycle state changes, an event is added to it or its recovery watch is
        decided (``recovery``: the watch's status, empty without one), so comparing two
        reads tells which alerts are new or changed in between, whichever instance wrote
        them (the workspace's live updates poll this). One indexed read
        (``alerts_by_manager``, joined to the watch by its primary key), no deliveries.

        Args:
            manager_id: the relationship manager.
            limit: the newest this many alerts (by ``created_at``), 1–500.

        Raises:
            ValueError: a bad ``limit``.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        with self._lock:
            rows = self._conn.execute(
                "SELECT a.alert_id, a.state, a.event_count, a.updated_at, r.status AS recovery "
                "FROM alerts a LEFT JOIN alert_recoveries r ON r.alert_id = a.alert_id "
                "WHERE a.manager_id = ? ORDER BY a.created_at DESC, a.alert_id DESC LIMIT ?",
                (manager_id, limit),
            ).fetchall()
        return {row["alert_id"]: (f"{row['state']}|{row['event_count']}|{row['updated_at']}"
                                  f"|{row['recovery'] or ''}")
                for row in rows}


def _encode_cursor(created_at: str, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{alert_id}".encode()).decode("ascii")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, alert_id = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("|")
        parse_utc(created_at)
    except (ValueError, UnicodeError) as error:
        raise ValueError("cursor is not one this store returned") from error
    return created_at, alert_id
