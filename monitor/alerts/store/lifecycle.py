"""The alert store's lifecycle: states, history, acknowledgement and resolution.

A part of :class:`~monitor.alerts.store.AlertStore`; the states and their rules are
:mod:`monitor.alerts.states`. Escalation steps are :mod:`monitor.alerts.store.escalation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.alerts.states import (
    RESOLUTION_OUTCOMES,
    AlertNotFoundError,
    AlertState,
    HistoryAction,
    HistoryEntry,
    StateConflictError,
    Transition,
)
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.rows import (
    clean_actor,
    clean_note,
    clean_via,
    history_entry_from_row,
    parse_utc,
    utc_text,
    write_history,
)

__all__ = ["LifecycleQueries", "LifecycleRecord"]


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
        outcome: for ``resolved``, what was done (one of
            :data:`~monitor.alerts.states.RESOLUTION_OUTCOMES`), ``None`` for a note alone.
    """

    history_id: int
    action: HistoryAction
    via: str
    severity: str
    at: datetime
    opened_at: datetime
    step: int = 0
    outcome: str | None = None


class LifecycleQueries(StoreConnection):
    """Lifecycle states, history, acknowledgement and resolution of :class:`~monitor.alerts.store.AlertStore`."""

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
        return [history_entry_from_row(row) for row in rows]

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
                """SELECT h.history_id, h.action, h.via, h.at, h.outcome, a.severity, a.created_at,
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
                                   via=row["via"], severity=row["severity"], at=parse_utc(row["at"]),
                                   opened_at=parse_utc(row["created_at"]), step=row["step"],
                                   outcome=row["outcome"])
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
        self, alert_id: str, *, by: str, via: str, note: str | None,
        outcome: str | None = None, at: datetime | None = None,
    ) -> Transition:
        """Resolve an acknowledged alert with a note, an outcome or both, saying what was done.

        Idempotent: resolving a resolved alert changes nothing (``changed=False``).

        Args:
            alert_id: the alert.
            by: who (manager ID or operator name).
            via: the channel it came through.
            note: what was done (PAN-scrubbed; required without ``outcome``).
            outcome: what was done, one of :data:`~monitor.alerts.states.RESOLUTION_OUTCOMES`
                (recorded in the history row's ``outcome``), or ``None``.
            at: when (aware; UTC now if ``None``).

        Raises:
            AlertNotFoundError: no such alert.
            StateConflictError: the alert is not acknowledged yet (acknowledge it first).
            ValueError: ``by`` or ``via`` is empty or too long, ``outcome`` is not in the
                vocabulary, or neither a note nor an outcome says what was done.
        """
        if outcome is not None and outcome not in RESOLUTION_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(RESOLUTION_OUTCOMES)}")
        if outcome is None and (not note or not note.strip()):
            raise ValueError("a resolution needs a note saying what was done")
        return self._transition(alert_id, "resolved", by=by, via=via, note=note, at=at,
                                allowed=("acknowledged",), outcome=outcome)

    @retried
    def _transition(
        self, alert_id: str, target: AlertState, *, by: str, via: str, note: str | None,
        at: datetime | None, allowed: tuple[AlertState, ...], outcome: str | None = None,
    ) -> Transition:
        actor, channel, text = clean_actor(by), clean_via(via), clean_note(note)
        stamp = utc_text(at or datetime.now(UTC))
        action: HistoryAction = "acknowledged" if target == "acknowledged" else "resolved"
        with self._transaction() as conn:
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
            entry = write_history(conn, alert_id, action, state, target, actor, channel, text, stamp,
                                  outcome)
        return Transition(alert_id=alert_id, state=target, changed=True, entry=entry)
