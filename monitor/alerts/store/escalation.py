"""The alert store's escalation steps and deliveries to another manager than the alert's own.

A part of :class:`~monitor.alerts.store.AlertStore`. The chain (which severities,
after how long, to whom) is :mod:`monitor.alerts.lifecycle`; the pass that takes
the due steps is :func:`monitor.alerts.jobs.escalate_due`. Here each step is taken
once per alert (a step counter checked under a row lock), written to the history,
and enqueued to its recipient — or, for an alert of an incident, as one escalation
notice per incident, manager and step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitor.alerts.states import SYSTEM_ACTOR, AlertNotFoundError
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.incidents import enqueue_escalation_notice
from monitor.alerts.store.routes import enqueue_to_manager
from monitor.alerts.store.rows import clean_note, parse_utc, utc_text, write_history
from monitor.domain import Manager

__all__ = ["EscalationCandidate", "EscalationQueries"]


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


class EscalationQueries(StoreConnection):
    """Escalation steps of :class:`~monitor.alerts.store.AlertStore`."""

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
        cutoff = utc_text(now - timedelta(seconds=first_after_seconds))
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
                                    created_at=parse_utc(row["created_at"]),
                                    escalation_step=row["escalation_step"]) for row in rows]

    @retried
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
        stamp = utc_text(at)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT state, escalation_step, manager_id FROM alerts WHERE alert_id = ?"
                f"{conn.for_update}", (alert_id,),
            ).fetchone()
            if row is None or row["state"] in ("acknowledged", "resolved") \
                    or row["escalation_step"] != step_index:
                return None
            conn.execute("UPDATE alerts SET escalation_step = ? WHERE alert_id = ?",
                         (step_index + 1, alert_id))
            write_history(conn, alert_id, "escalated", row["state"], row["state"], SYSTEM_ACTOR,
                           "escalation", clean_note(note), stamp)
            if recipient is None or recipient.manager_id == row["manager_id"]:
                return 0
            linked = conn.execute("SELECT incident_id FROM incident_alerts WHERE alert_id = ?",
                                  (alert_id,)).fetchone()
            if linked is not None:  # one escalation message per incident, manager and step
                return enqueue_escalation_notice(conn, linked["incident_id"], row["manager_id"],
                                                  step_index, recipient, channels, stamp)
            return enqueue_to_manager(conn, alert_id, recipient, channels, stamp)

    @retried
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
        stamp = utc_text(at or datetime.now(UTC))
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone() is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            return enqueue_to_manager(conn, alert_id, manager, channels, stamp)
