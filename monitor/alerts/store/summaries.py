"""The alert store's side of the per-manager rate cap: counting messages, claiming summaries.

:func:`at_rate_cap` tells :meth:`~monitor.alerts.store.AlertStore.record` whether a
manager already got their ``max_messages`` in the window (inside its transaction);
:class:`SummaryQueries` claims each capped manager's alerts into one summary and
reads it back for the renderer. The cap's rules and the summary's identity are
:mod:`monitor.alerts.ratelimit`; the job that claims is
:func:`monitor.alerts.jobs.summaries_due`; the message is
:mod:`monitor.alerts.messages.summary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from monitor.alerts.ratelimit import Summary
from monitor.alerts.states import AlertState
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database
from monitor.alerts.store.routes import RouteChoice, Routes, manager_of_latest_alert
from monitor.alerts.store.rows import alert_from_row, parse_utc, scrubbed, utc_text
from monitor.domain import SEVERITIES, Alert, Manager
from monitor.ids import summary_id_for

__all__ = ["SummaryQueries", "at_rate_cap"]


class SummaryQueries(StoreConnection):
    """The rate-cap summaries of :class:`~monitor.alerts.store.AlertStore`."""

    @retried
    def claim_summaries(
        self,
        cutoff: datetime,
        *,
        at: datetime,
        managers: Mapping[str, Manager],
        route: RouteChoice,
    ) -> list[Summary]:
        """Claim each manager's capped alerts into one summary, when the oldest waited enough.

        In one transaction per call: for each manager whose oldest capped alert not yet
        in a summary was capped at or before ``cutoff``, insert the summary (its ID
        derives from the manager and that alert's time: a second instance inserts
        nothing), stamp the alerts with it and enqueue it to the recipient and on the
        routes that ``route`` chooses for the manager at the highest severity among
        the alerts.

        Args:
            cutoff: claim a manager's alerts when the oldest was capped at or before this.
            at: the time of the claim (aware).
            managers: the registry's managers by ID (a manager it no longer names is
                taken from their latest stored alert).
            route: the caller's decision: who gets the summary, through which routes
                (:func:`monitor.alerts.jobs.summaries_due`: whoever covers the manager,
                on their channels for that severity).

        Returns:
            The summaries claimed by this call.
        """
        stamp = utc_text(at)
        claimed: list[Summary] = []
        with self._transaction() as conn:
            rows = conn.execute(
                """SELECT manager_id, min(capped_at) AS first, max(capped_at) AS last,
                    max(severity_rank) AS rank FROM alerts
                WHERE capped_at IS NOT NULL AND summary_id IS NULL
                GROUP BY manager_id HAVING min(capped_at) <= ? ORDER BY manager_id""",
                (utc_text(cutoff),)).fetchall()
            for row in rows:
                summary_id = summary_id_for(row["manager_id"], parse_utc(row["first"]))
                if not conn.execute(
                    """INSERT INTO summaries (summary_id, manager_id, period_start, period_end,
                        alert_count, created_at) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT DO NOTHING""",
                        (summary_id, row["manager_id"], row["first"], row["last"], stamp)).rowcount:
                    continue
                count = conn.execute(
                    """UPDATE alerts SET summary_id = ? WHERE manager_id = ? AND capped_at IS NOT NULL
                    AND summary_id IS NULL AND capped_at <= ?""",
                    (summary_id, row["manager_id"], row["last"])).rowcount
                conn.execute("UPDATE summaries SET alert_count = ? WHERE summary_id = ?",
                             (count, summary_id))
                if not count:  # PostgreSQL: another instance's summary took them meanwhile
                    continue
                manager = managers.get(row["manager_id"]) or manager_of_latest_alert(conn, row["manager_id"])
                recipient, channels = route(manager, SEVERITIES[row["rank"]])
                for channel in channels:
                    conn.execute(
                        """INSERT INTO deliveries
                            (alert_id, channel, status, attempts, next_attempt_at, created_at,
                             updated_at, recipient_id, recipient_name, recipient_email,
                             recipient_webhook_url, recipient_timezone)
                        VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                        (summary_id, channel, stamp, stamp, stamp, recipient.manager_id,
                         scrubbed(recipient.name), recipient.email, recipient.webhook_url,
                         recipient.timezone))
                claimed.append(Summary(summary_id=summary_id, manager_id=row["manager_id"],
                                       period_start=parse_utc(row["first"]), period_end=parse_utc(row["last"]),
                                       alert_count=count, created_at=at.astimezone(UTC)))
        return claimed

    def summary(self, summary_id: str) -> Summary | None:
        """Return a claimed summary, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM summaries WHERE summary_id = ?",
                                     (summary_id,)).fetchone()
        if row is None:
            return None
        return Summary(summary_id=row["summary_id"], manager_id=row["manager_id"],
                       period_start=parse_utc(row["period_start"]), period_end=parse_utc(row["period_end"]),
                       alert_count=row["alert_count"], created_at=parse_utc(row["created_at"]))

    def summary_alerts(self, summary_id: str) -> list[tuple[Alert, AlertState]]:
        """The alerts of a summary with their lifecycle state, oldest first (no deliveries)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alerts WHERE summary_id = ? ORDER BY created_at, alert_id",
                (summary_id,)).fetchall()
        return [(alert_from_row(row, ()), row["state"]) for row in rows]


def at_rate_cap(conn: Database, alert_id: str, manager_id: str, routes: Routes,
                now: datetime) -> bool:
    """Whether ``manager_id`` reached the rate cap at ``now`` (never without a cap).

    Counts, in the cap's window, the messages the manager got: their alerts that went (or go) out
    on their own (not folded into an incident, not capped), incident notices, summaries;
    ``alert_id`` (the alert being recorded) is not counted.
    """
    # Messages the manager got in the window: their alerts that went (or go) out on
    # their own (not folded into an incident, not capped), incident notices, summaries.
    limit = routes.rate_limit
    if limit is None:
        return False
    since = utc_text(now - timedelta(seconds=limit.per_seconds))
    sinks = tuple(routes.sinks) or ("",)
    row = conn.execute(
        f"""SELECT
            (SELECT count(*) FROM alerts a WHERE a.manager_id = ? AND a.created_at >= ?
                AND a.alert_id != ? AND a.capped_at IS NULL AND EXISTS (
                    SELECT 1 FROM deliveries d WHERE d.alert_id = a.alert_id
                    AND d.recipient_id = '' AND d.status != 'merged'
                    AND d.channel NOT IN ({', '.join('?' * len(sinks))})))
          + (SELECT count(*) FROM incident_notices WHERE manager_id = ? AND created_at >= ?)
          + (SELECT count(*) FROM summaries WHERE manager_id = ? AND created_at >= ?) AS sent""",
        (manager_id, since, alert_id, *sinks, manager_id, since, manager_id, since)).fetchone()
    return int(row["sent"]) >= limit.max_messages
