"""The alert store's lifecycle queries: states, history, acknowledgement, the alert list, escalation.

A mixin of :class:`~monitor.alerts.store.AlertStore` (its connection, lock and
transactions come from there); the escalation policy itself is
:mod:`monitor.alerts.lifecycle`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from monitor.alerts.states import (
    ALERT_STATES,
    SYSTEM_ACTOR,
    AlertNotFoundError,
    AlertState,
    HistoryAction,
    HistoryEntry,
    StateConflictError,
    Transition,
)
from monitor.alerts.store.rows import (
    _MAX_PAGE,
    StoreConnection,
    _alert,
    _clean_text,
    _delivery,
    _dt,
    _enqueue_for,
    _history_entry,
    _note,
    _retried,
    _ts,
    _write_history,
)
from monitor.alerts.store.storm import _enqueue_escalation_notice
from monitor.domain import Alert, Delivery, Manager

__all__ = ["AlertPage", "EscalationCandidate", "LifecycleQueries", "LifecycleRecord", "_actor", "_via"]

# Bounds on what people type into the history (an API caller must not bloat the store).
_MAX_ACTOR_CHARS: Final = 200
_VIA: Final = re.compile(r"[a-z][a-z0-9_.:-]{0,31}")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationCandidate:
    """An alert that may have an escalation step due (see :meth:`AlertStore.escalation_candidates`).

    Attributes:
        alert_id: the alert.
        manager_id: the client's own relationship manager.
        created_at: when the alert was recorded (UTC); step delays count from here.
        escalation_step: steps already taken.
    """

    alert_id: str
    manager_id: str
    created_at: datetime
    escalation_step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleRecord:
    """An acknowledgement, escalation step or resolution, with what metrics need of its alert.

    Attributes:
        history_id: the history row (increasing in commit order).
        action: ``acknowledged``, ``escalated`` or ``resolved``.
        via: the channel it came through (``api``, ``link``, ``cli``, ``escalation``...).
        severity: the alert's severity now (``low``, ``medium``, ``high``).
        at: when it happened (UTC).
        opened_at: when the alert was recorded (UTC).
        step: for ``escalated``, which step of the alert's chain it was (1 = the
            first); 0 otherwise.
    """

    history_id: int
    action: HistoryAction
    via: str
    severity: str
    at: datetime
    opened_at: datetime
    step: int = 0


class LifecycleQueries(StoreConnection):
    """Lifecycle states, history, acknowledgement, the alert list and escalation of :class:`AlertStore`."""

    # -- lifecycle: states, history, acknowledgement, escalation ---------------------

    def state_of(self, alert_id: str) -> AlertState | None:
        """Return an alert's lifecycle state, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else row["state"]

    def history(self, alert_id: str) -> list[HistoryEntry]:
        """Return an alert's history, oldest first (empty for an unknown alert)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alert_history WHERE alert_id = ? ORDER BY history_id", (alert_id,)
            ).fetchall()
        return [_history_entry(row) for row in rows]

    def lifecycle_records(
        self, after_history_id: int, limit: int = 5_000
    ) -> tuple[list[LifecycleRecord], int]:
        """Acknowledgements, escalation steps and resolutions recorded after a history row.

        Whoever wrote them — this process's API, another instance, the CLI — so a
        reader that keeps the returned cursor sees each exactly once.

        Args:
            after_history_id: the cursor of the previous call; 0 for everything.
            limit: most records returned (>= 1).

        Returns:
            ``(records, cursor)``: records in history order, and the cursor for the next
            call (the last history row read; unchanged when nothing is new).
        """
        with self._lock:
            newest = self._conn.execute("SELECT max(history_id) FROM alert_history").fetchone()[0]
            if newest is None or newest <= after_history_id:
                return [], after_history_id
            rows = self._conn.execute(
                """SELECT h.history_id, h.action, h.via, h.at, a.severity, a.created_at,
                    CASE WHEN h.action = 'escalated' THEN (
                        SELECT count(*) FROM alert_history e WHERE e.alert_id = h.alert_id
                        AND e.action = 'escalated' AND e.history_id <= h.history_id)
                    ELSE 0 END AS step
                FROM alert_history h JOIN alerts a ON a.alert_id = h.alert_id
                WHERE h.history_id > ? AND h.history_id <= ?
                  AND h.action IN ('acknowledged', 'escalated', 'resolved')
                ORDER BY h.history_id LIMIT ?""",
                (after_history_id, newest, limit),
            ).fetchall()
        records = [LifecycleRecord(history_id=row["history_id"], action=row["action"],
                                   via=row["via"], severity=row["severity"], at=_dt(row["at"]),
                                   opened_at=_dt(row["created_at"]), step=row["step"])
                   for row in rows]
        cursor = records[-1].history_id if len(records) == limit else newest
        return records, cursor

    def state_counts(self) -> dict[tuple[AlertState, str], int]:
        """Alerts in the store by ``(lifecycle state, severity)``; absent pairs have none."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, severity, count(*) FROM alerts GROUP BY state, severity").fetchall()
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def acknowledge(
        self, alert_id: str, *, by: str, via: str, note: str | None = None,
        at: datetime | None = None,
    ) -> Transition:
        """Acknowledge an alert: someone owns it now, and its escalation chain stops.

        Idempotent: acknowledging an acknowledged (or resolved) alert changes nothing
        and returns ``changed=False``.

        Args:
            alert_id: the alert.
            by: who (manager ID or operator name; 1–200 characters, PAN-scrubbed).
            via: the channel it came through (``api``, ``link``, ``cli``...).
            note: optional free text (PAN-scrubbed, at most 2,000 characters kept).
            at: when (aware; UTC now if ``None``).

        Returns:
            The :class:`Transition`.

        Raises:
            AlertNotFoundError: no such alert.
            ValueError: ``by`` or ``via`` is empty or too long.
        """
        return self._transition(alert_id, "acknowledged", by=by, via=via, note=note, at=at,
                                allowed=("open", "notified", "failed"))

    def resolve(
        self, alert_id: str, *, by: str, via: str, note: str, at: datetime | None = None
    ) -> Transition:
        """Resolve an acknowledged alert with a note saying what was done.

        Idempotent: resolving a resolved alert changes nothing (``changed=False``).

        Args:
            alert_id: the alert.
            by: who (manager ID or operator name).
            via: the channel it came through.
            note: what was done (required, PAN-scrubbed).
            at: when (aware; UTC now if ``None``).

        Raises:
            AlertNotFoundError: no such alert.
            StateConflictError: the alert is not acknowledged yet (acknowledge it first).
            ValueError: ``by``, ``via`` or ``note`` is empty or too long.
        """
        if not note or not note.strip():
            raise ValueError("a resolution needs a note saying what was done")
        return self._transition(alert_id, "resolved", by=by, via=via, note=note, at=at,
                                allowed=("acknowledged",))

    @_retried
    def _transition(
        self, alert_id: str, target: AlertState, *, by: str, via: str, note: str | None,
        at: datetime | None, allowed: tuple[AlertState, ...],
    ) -> Transition:
        actor, channel, text = _actor(by), _via(via), _note(note)
        stamp = _ts(at or datetime.now(UTC))
        action: HistoryAction = "acknowledged" if target == "acknowledged" else "resolved"
        with self._lock, self._transaction() as conn:
            row = conn.execute(f"SELECT state FROM alerts WHERE alert_id = ?{conn.for_update}",
                               (alert_id,)).fetchone()
            if row is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            state: AlertState = row["state"]
            if state == target or (target == "acknowledged" and state == "resolved"):
                return Transition(alert_id=alert_id, state=state, changed=False)
            if state not in allowed:
                raise StateConflictError(
                    f"alert {alert_id} is {state}; acknowledge it before resolving it", state)
            conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (target, alert_id))
            entry = _write_history(conn, alert_id, action, state, target, actor, channel, text, stamp)
        return Transition(alert_id=alert_id, state=target, changed=True, entry=entry)

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
        if not 1 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {_MAX_PAGE}")
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
            params.append(_ts(since))
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
            by_alert.setdefault(delivery_row["alert_id"], []).append(_delivery(delivery_row))
        alerts = tuple(_alert(row, tuple(by_alert.get(row["alert_id"], ()))) for row in page)
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = _encode_cursor(last["created_at"], last["alert_id"])
        return AlertPage(alerts=alerts, states={row["alert_id"]: row["state"] for row in page},
                         next_cursor=next_cursor)

    def escalation_candidates(
        self, severities: Sequence[str], now: datetime, first_after_seconds: int, step_count: int
    ) -> list[EscalationCandidate]:
        """Alerts that may have an escalation step due at ``now``, oldest first.

        Those of one of ``severities``, neither acknowledged nor resolved nor late
        (stale events page nobody, not even by escalation), with fewer than
        ``step_count`` steps taken and recorded at least ``first_after_seconds`` before
        ``now``.
        """
        if not severities:
            return []
        cutoff = _ts(now - timedelta(seconds=first_after_seconds))
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT alert_id, manager_id, created_at, escalation_step FROM alerts
                WHERE state NOT IN ('acknowledged', 'resolved') AND late = 0
                  AND severity IN ({', '.join('?' * len(severities))})
                  AND escalation_step < ? AND created_at <= ?
                ORDER BY created_at, alert_id""",
                (*severities, step_count, cutoff),
            ).fetchall()
        return [EscalationCandidate(alert_id=row["alert_id"], manager_id=row["manager_id"],
                                    created_at=_dt(row["created_at"]),
                                    escalation_step=row["escalation_step"]) for row in rows]

    @_retried
    def escalate(
        self,
        alert_id: str,
        step_index: int,
        *,
        recipient: Manager | None,
        channels: Sequence[str] = ("email", "webhook"),
        note: str,
        at: datetime,
    ) -> int | None:
        """Take escalation step ``step_index`` (0-based) of an alert, once.

        In one transaction: check the alert is neither acknowledged nor resolved and
        has taken exactly ``step_index`` steps; count the step; write an
        ``escalated`` history row; enqueue the recipient's deliveries.

        Args:
            alert_id: the alert.
            step_index: the step to take (0-based).
            recipient: who to notify; ``None`` records the step without a delivery.
            channels: the manager channels that are configured.
            note: the history note (which step, to whom).
            at: the time of the step (aware).

        Returns:
            Outbox rows added, or ``None`` when the step was not taken (acknowledged,
            resolved, unknown alert, or the step is already taken).
        """
        stamp = _ts(at)
        with self._lock, self._transaction() as conn:
            row = conn.execute(
                "SELECT state, escalation_step, manager_id FROM alerts WHERE alert_id = ?"
                f"{conn.for_update}", (alert_id,),
            ).fetchone()
            if row is None or row["state"] in ("acknowledged", "resolved") \
                    or row["escalation_step"] != step_index:
                return None
            conn.execute("UPDATE alerts SET escalation_step = ? WHERE alert_id = ?",
                         (step_index + 1, alert_id))
            _write_history(conn, alert_id, "escalated", row["state"], row["state"], SYSTEM_ACTOR,
                           "escalation", _note(note), stamp)
            if recipient is None or recipient.manager_id == row["manager_id"]:
                return 0
            linked = conn.execute("SELECT incident_id FROM incident_alerts WHERE alert_id = ?",
                                  (alert_id,)).fetchone()
            if linked is not None:  # one escalation message per incident, manager and step
                return _enqueue_escalation_notice(conn, linked["incident_id"], row["manager_id"],
                                                  step_index, recipient, channels, stamp)
            return _enqueue_for(conn, alert_id, recipient, channels, stamp)

    @_retried
    def enqueue_for_manager(
        self,
        alert_id: str,
        manager: Manager,
        *,
        channels: Sequence[str] = ("email", "webhook"),
        at: datetime | None = None,
    ) -> int:
        """Enqueue deliveries of an alert to another manager than the alert's own.

        One row per channel the manager has (``email`` if an address, ``webhook`` if
        a URL) among ``channels``, unique on ``(alert_id, channel, recipient_id)``:
        calling it again never sends twice. The manager's contact details are kept
        on the row (a snapshot, as alerts keep their manager's).

        Returns:
            Outbox rows added (0 if they were already there).

        Raises:
            AlertNotFoundError: no such alert.
        """
        stamp = _ts(at or datetime.now(UTC))
        with self._lock, self._transaction() as conn:
            if conn.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone() is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            return _enqueue_for(conn, alert_id, manager, channels, stamp)

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


def _actor(by: str) -> str:
    text = _clean_text(by.strip())
    if not text or len(text) > _MAX_ACTOR_CHARS:
        raise ValueError(f"'by' must be 1 to {_MAX_ACTOR_CHARS} characters")
    return text


def _via(via: str) -> str:
    if not _VIA.fullmatch(via):
        raise ValueError("'via' must be a short channel name such as api, link or cli")
    return via


def _encode_cursor(created_at: str, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{alert_id}".encode()).decode("ascii")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, alert_id = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("|")
        _dt(created_at)
    except (ValueError, UnicodeError) as error:
        raise ValueError("cursor is not one this store returned") from error
    return created_at, alert_id
