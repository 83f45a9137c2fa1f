"""Putting failed deliveries back in the outbox (``cardmon alerts resend``), with who did it.

A part of :class:`~monitor.alerts.store.AlertStore`: :meth:`ResendQueries.resend`
re-queues the failed rows of one message (an alert and the notices and summary that
carry it, or a notice, summary or digest) or of the whole store, and records a
``resent`` history row on each alert concerned (a ``failed`` one is ``open`` again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.alerts.states import AlertNotFoundError, AlertState
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database
from monitor.alerts.store.rows import clean_actor, clean_note, clean_via, utc_text, write_history

__all__ = ["Resend", "ResendQueries"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resend:
    """What :meth:`AlertStore.resend` put back in the outbox.

    Attributes:
        deliveries: failed outbox rows made pending again (due at once).
        alert_ids: alerts whose history got a ``resent`` row (a ``failed`` one is
            ``open`` again), in alert ID order.
        message_ids: the IDs the re-queued rows belong to (alerts, incident notices,
            summaries, digests), in ID order.
    """

    deliveries: int
    alert_ids: tuple[str, ...]
    message_ids: tuple[str, ...]


class ResendQueries(StoreConnection):
    """Re-sending failed deliveries of :class:`~monitor.alerts.store.AlertStore`."""

    @retried
    def resend(
        self, message_id: str | None, *, by: str, via: str, at: datetime | None = None
    ) -> Resend:
        """Put failed deliveries back in the outbox, due at once, and record who did it.

        The rows of ``message_id`` (an alert, and the incident notices and rate-cap
        summary that carry it; or a digest, notice or summary ID), or with ``None``
        every failed row of the store, become ``pending`` with a new retry window
        (attempts from 0, the fallback told again if they keep failing); each keeps its
        last error and records ``resent_by``/``resent_at``. Each alert concerned gets a
        ``resent`` history row (``by``, ``via``, which channels); a ``failed`` alert is
        ``open`` again. Nothing failed: nothing changes.

        Args:
            message_id: an alert (``al-``), notice (``ic-``), summary, digest (``dg-``) or
                recovery follow-up (``rf-``) ID; ``None`` for every failed delivery
                (``--all-failed``).
            by: who (operator name or manager ID; 1–200 characters, PAN-scrubbed).
            via: the channel it came through (``cli``, ``api``).
            at: when (aware; UTC now if ``None``).

        Returns:
            The :class:`Resend`.

        Raises:
            AlertNotFoundError: ``message_id`` names nothing in the store.
            ValueError: ``by`` or ``via`` is empty or too long.
        """
        actor, channel = clean_actor(by), clean_via(via)
        stamp = utc_text(at or datetime.now(UTC))
        with self._transaction() as conn:
            if message_id is None:
                rows = conn.execute(
                    f"""SELECT delivery_id, alert_id, channel FROM deliveries WHERE status = 'failed'
                    ORDER BY delivery_id{conn.for_update}""").fetchall()
            else:
                if not _message_exists(conn, message_id):
                    raise AlertNotFoundError(f"no alert, notice, summary or digest {message_id}")
                rows = conn.execute(
                    f"""SELECT delivery_id, alert_id, channel FROM deliveries WHERE status = 'failed'
                    AND (alert_id = ? OR alert_id IN (
                        SELECT n.notice_id FROM incident_notices n JOIN incident_alerts l
                          ON l.incident_id = n.incident_id AND l.manager_id = n.manager_id
                        WHERE l.alert_id = ? AND n.kind IN ('opened', 'update'))
                      OR alert_id IN (SELECT summary_id FROM alerts WHERE alert_id = ?))
                    ORDER BY delivery_id{conn.for_update}""",
                    (message_id, message_id, message_id)).fetchall()
            if not rows:
                return Resend(deliveries=0, alert_ids=(), message_ids=())
            conn.executemany(
                """UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,
                    first_attempt_at = NULL, fallback_at = NULL, resent_by = ?, resent_at = ?,
                    updated_at = ? WHERE delivery_id = ? AND status = 'failed'""",
                [(stamp, actor, stamp, stamp, row["delivery_id"]) for row in rows])
            concerned: dict[str, list[str]] = {}  # <alert_id: re-queued channels>
            for row in rows:
                for alert_id in _alerts_of_message(conn, row["alert_id"]):
                    via_text = (row["channel"] if alert_id == row["alert_id"]
                                else f"{row['channel']} of {row['alert_id']}")
                    concerned.setdefault(alert_id, []).append(via_text)
            for alert_id in sorted(concerned):
                state = conn.execute(f"SELECT state FROM alerts WHERE alert_id = ?{conn.for_update}",
                                     (alert_id,)).fetchone()["state"]
                target: AlertState = "open" if state == "failed" else state
                if target != state:
                    conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (target, alert_id))
                write_history(conn, alert_id, "resent", state, target, actor, channel,
                               clean_note(f"re-queued failed deliveries: {', '.join(concerned[alert_id])}"),
                               stamp)
        return Resend(deliveries=len(rows), alert_ids=tuple(sorted(concerned)),
                      message_ids=tuple(sorted({row["alert_id"] for row in rows})))


def _message_exists(conn: Database, message_id: str) -> bool:
    return conn.execute(
        """SELECT EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?)
            OR EXISTS (SELECT 1 FROM incident_notices WHERE notice_id = ?)
            OR EXISTS (SELECT 1 FROM summaries WHERE summary_id = ?)
            OR EXISTS (SELECT 1 FROM digests WHERE digest_id = ?)
            OR EXISTS (SELECT 1 FROM deliveries WHERE alert_id = ? AND alert_id LIKE 'rf-%')""",
        (message_id,) * 5).fetchone()[0] in (1, True)


def _alerts_of_message(conn: Database, message_id: str) -> list[str]:
    # The alert itself, or the alerts an opened/update notice or a summary carries that
    # its failure left failed (a digest, resolved or escalation notice carries none).
    if conn.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (message_id,)).fetchone() is not None:
        return [message_id]
    rows = conn.execute(
        """SELECT a.alert_id FROM alerts a WHERE a.summary_id = ? AND a.state = 'failed'
        UNION SELECT a.alert_id FROM incident_notices n
            JOIN incident_alerts l ON l.incident_id = n.incident_id AND l.manager_id = n.manager_id
            JOIN alerts a ON a.alert_id = l.alert_id
        WHERE n.notice_id = ? AND n.kind IN ('opened', 'update') AND a.state = 'failed'
        ORDER BY 1""", (message_id, message_id)).fetchall()
    return [row[0] for row in rows]
