"""The alert store's storm control, written inside a transaction: incidents, links, notices.

When :meth:`~monitor.alerts.store.AlertStore.record` stores a batch, it applies the
detector's incident changes first (:func:`apply_incident_changes`), links each
alert an incident takes (:func:`link_to_incident`, :func:`link_events`) — folding the
alert's own manager messages into one notice per manager and incident — and, when
an incident ends, enqueues the resolved notices (:func:`enqueue_resolved_notices`).
Escalating an alert of an incident sends one escalation notice per incident,
manager and step (:func:`enqueue_escalation_notice`). Each function runs inside the
caller's transaction and never commits. The detector is :mod:`monitor.incidents`;
reading incidents back is :mod:`monitor.alerts.store.incident_reads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.alerts.preferences import covering_manager
from monitor.alerts.routing import channels_for
from monitor.alerts.store.db import Database
from monitor.alerts.store.routes import Routes, enqueue_to_manager, manager_of_latest_alert
from monitor.alerts.store.rows import parse_utc, scrubbed, utc_text
from monitor.domain import SEVERITIES, Manager, VipFailure
from monitor.ids import notice_id_for
from monitor.incidents.model import IncidentChange, NoticeKind

__all__ = [
    "apply_incident_changes",
    "enqueue_escalation_notice",
    "enqueue_resolved_notices",
    "link_events",
    "link_to_incident",
]


def apply_incident_changes(
    conn: Database, changes: Sequence[IncidentChange], stamp: str
) -> dict[str, str]:
    """Store the detector's incident changes (opened, updated, ended) in order."""
    # Returns <detector's incident_id: stored incident_id>: when another instance (or
    # an earlier run) already opened an incident for the scope key, its ID is kept.
    stored: dict[str, str] = {}
    for change in changes:
        note = (f"flapping: failed again {change.relapses} times after recovering"
                if change.flapping else None)
        values = (utc_text(change.last_failure_at), change.failures, change.cards, change.terminals,
                  change.relapses, int(change.flapping), note, stamp)
        if change.kind == "opened":
            conn.execute(
                """INSERT INTO incidents (incident_id, scope, scope_key, started_at, last_failure_at,
                    failures, cards, terminals, relapses, flapping, note, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (change.incident_id, change.scope, scrubbed(change.scope_key),
                 utc_text(change.started_at), *values, stamp))
            row = conn.execute(
                "SELECT incident_id FROM incidents WHERE scope = ? AND scope_key = ? AND ended_at IS NULL",
                (change.scope, scrubbed(change.scope_key))).fetchone()
            stored[change.incident_id] = row["incident_id"] if row is not None else change.incident_id
            continue
        target = stored.get(change.incident_id, change.incident_id)
        # Counts only grow: two instances each counting their share never lower them.
        conn.execute(
            """UPDATE incidents SET
                last_failure_at = CASE WHEN ? > last_failure_at THEN ? ELSE last_failure_at END,
                failures = CASE WHEN ? > failures THEN ? ELSE failures END,
                cards = CASE WHEN ? > cards THEN ? ELSE cards END,
                terminals = CASE WHEN ? > terminals THEN ? ELSE terminals END,
                relapses = CASE WHEN ? > relapses THEN ? ELSE relapses END,
                flapping = CASE WHEN ? > flapping THEN ? ELSE flapping END,
                note = coalesce(?, note), updated_at = ?,
                parent_id = coalesce(parent_id, ?)
            WHERE incident_id = ? AND ended_at IS NULL""",
            (values[0], values[0], values[1], values[1], values[2], values[2], values[3], values[3],
             values[4], values[4], values[5], values[5], note, stamp,
             stored.get(change.parent_id, change.parent_id) if change.parent_id else None, target))
        if change.kind == "ended" and change.ended_at is not None:
            conn.execute(
                "UPDATE incidents SET ended_at = ?, updated_at = ? WHERE incident_id = ? AND ended_at IS NULL",
                (utc_text(change.ended_at), stamp, target))
        stored[change.incident_id] = target
    return stored


def link_to_incident(
    conn: Database, incident_id: str, alert_id: str, failure: VipFailure,
    routes: Routes, stamp: str,
) -> int:
    """Link a new alert to the incident that holds it; returns outbox rows added (its manager's notice)."""
    return _link(conn, incident_id, alert_id, failure.manager, failure.severity, routes, stamp)


def link_events(
    conn: Database, incident_id: str, event_ids: Sequence[str], routes: Routes, stamp: str
) -> int:
    """Link the alerts of the VIP failures the detector attributed to an incident; returns outbox rows added."""
    # The detector attributed these VIP failures to the incident when their bucket
    # closed (or when it opened, for earlier ones): link their alerts, in that order
    # (an alert already linked stays with the incident that took it first), and fold
    # their held messages as long as they were not tried.
    count = 0
    for event_id in event_ids:
        alert = conn.execute(
            """SELECT a.alert_id, a.manager_id, a.severity FROM alert_events e
            JOIN alerts a ON a.alert_id = e.alert_id WHERE e.event_id = ? AND a.late = 0""",
            (event_id,)).fetchone()
        if alert is None:  # not a stored VIP failure, or a late one (it pages nobody)
            continue
        manager = (routes.managers or {}).get(alert["manager_id"]) \
            or manager_of_latest_alert(conn, alert["manager_id"])
        count += _link(conn, incident_id, alert["alert_id"], manager, alert["severity"],
                            routes, stamp)
    return count


def _link(
    conn: Database, incident_id: str, alert_id: str, manager: Manager,
    severity: str, routes: Routes, stamp: str,
) -> int:
    # 1. link the alert (an alert belongs to one incident: the first that takes it);
    # 2. fold its manager messages that have not been tried yet into the incident;
    # 3. make sure its manager has a notice that will name it: the first one (due
    #    after group_wait, so the clients hit meanwhile are in it), or, once that
    #    went out, one update per group_interval.
    if conn.execute("SELECT 1 FROM incidents WHERE incident_id = ?", (incident_id,)).fetchone() is None:
        return 0  # replayed events of an incident this store never opened
    linked = conn.execute(
        """INSERT INTO incident_alerts (incident_id, alert_id, manager_id, linked_at)
        VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING""",
        (incident_id, alert_id, manager.manager_id, stamp)).rowcount
    if not linked:
        return 0
    sinks = tuple(routes.sinks) or ("",)
    conn.execute(
        f"""UPDATE deliveries SET status = 'merged', updated_at = ?,
            last_error = 'folded into incident ' || ?
        WHERE alert_id = ? AND status = 'pending' AND attempts = 0
          AND channel NOT IN ({', '.join('?' * len(sinks))})""",
        (stamp, incident_id, alert_id, *sinks))
    latest = conn.execute(
        """SELECT n.notice_id, n.seq, n.created_at, EXISTS (
            SELECT 1 FROM deliveries d WHERE d.alert_id = n.notice_id
            AND d.status = 'pending' AND d.attempts = 0) AS waiting
        FROM incident_notices n WHERE n.incident_id = ? AND n.manager_id = ? AND n.seq > 0
        ORDER BY n.seq DESC LIMIT 1""",
        (incident_id, manager.manager_id)).fetchone()
    rules = routes.incidents
    now = parse_utc(stamp)
    if latest is None:
        wait = rules.group_wait_seconds if rules is not None else 0.0
        return _enqueue_notice(conn, incident_id, manager, "opened", 1,
                                    now + timedelta(seconds=wait), severity, routes, stamp)
    if latest["waiting"]:
        return 0  # rendered when it is sent: it will name this client too
    interval = rules.group_interval_seconds if rules is not None else 0.0
    due = max(now, parse_utc(latest["created_at"]) + timedelta(seconds=interval))
    return _enqueue_notice(conn, incident_id, manager, "update", latest["seq"] + 1,
                                due, severity, routes, stamp)


def _enqueue_notice(
    conn: Database, incident_id: str, manager: Manager, kind: NoticeKind, seq: int,
    due: datetime, severity: str, routes: Routes, stamp: str,
) -> int:
    notice_id = notice_id_for(incident_id, manager.manager_id, seq)
    if not conn.execute(
        """INSERT INTO incident_notices (notice_id, incident_id, manager_id, kind, seq, created_at)
        VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
        (notice_id, incident_id, manager.manager_id, kind, seq, stamp)).rowcount:
        return 0
    # The same routing as an alert: an away manager's backup, the per-severity channels.
    current = (routes.managers or {}).get(manager.manager_id, manager)
    recipient = covering_manager(current, routes.managers or {}, parse_utc(stamp)).manager
    count = 0
    for route in channels_for(recipient, severity, routes.enabled):  # type: ignore[arg-type]
        count += conn.execute(
            """INSERT INTO deliveries
                (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at,
                 recipient_id, recipient_name, recipient_email, recipient_webhook_url,
                 recipient_timezone)
            VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (notice_id, route.channel, utc_text(due), stamp, stamp, recipient.manager_id,
             scrubbed(recipient.name), recipient.email, recipient.webhook_url,
             recipient.timezone)).rowcount
    return count


def enqueue_resolved_notices(
    conn: Database, incident_id: str, routes: Routes, stamp: str
) -> int:
    """Enqueue an ended incident's resolved notice to each of its managers who opted in; returns outbox rows added."""
    # Only managers who opted in (notify_resolved in the registry), only when the
    # first notice went out (a manager never told of an incident needs no all-clear).
    rows = conn.execute(
        """SELECT n.manager_id, max(n.seq) AS seq, max(a.severity_rank) AS rank
        FROM incident_notices n
        JOIN incident_alerts l ON l.incident_id = n.incident_id AND l.manager_id = n.manager_id
        JOIN alerts a ON a.alert_id = l.alert_id
        WHERE n.incident_id = ? AND EXISTS (
            SELECT 1 FROM deliveries d JOIN incident_notices f ON f.notice_id = d.alert_id
            WHERE f.incident_id = n.incident_id AND f.manager_id = n.manager_id
              AND f.seq > 0 AND d.status = 'sent')
        GROUP BY n.manager_id ORDER BY n.manager_id""",
        (incident_id,)).fetchall()
    count = 0
    for row in rows:
        manager = (routes.managers or {}).get(row["manager_id"])
        if manager is None or not manager.notify_resolved:
            continue
        count += _enqueue_notice(conn, incident_id, manager, "resolved", row["seq"] + 1,
                                      parse_utc(stamp), SEVERITIES[row["rank"]], routes, stamp)
    return count


def enqueue_escalation_notice(
    conn: Database, incident_id: str, manager_id: str, step_index: int,
    recipient: Manager, channels: Sequence[str], stamp: str,
) -> int:
    """Enqueue the escalation notice of an incident's alerts of one manager to ``recipient``, once per step; returns outbox rows added."""
    # Escalation notices take negative sequence numbers (-1 for the first step), so
    # they never collide with the manager's own notices (1, 2, ...).
    seq = -(step_index + 1)
    notice_id = notice_id_for(incident_id, manager_id, seq)
    if not conn.execute(
        """INSERT INTO incident_notices (notice_id, incident_id, manager_id, kind, seq, created_at)
        VALUES (?, ?, ?, 'escalated', ?, ?) ON CONFLICT DO NOTHING""",
        (notice_id, incident_id, manager_id, seq, stamp)).rowcount:
        return 0
    return enqueue_to_manager(conn, notice_id, recipient, channels, stamp)
