"""What a delivery's outcome does to the alerts it carries: ``notified`` or ``failed``, with history.

The outbox (:mod:`monitor.alerts.store.outbox`) calls :func:`after_sent` and
:func:`after_failed` inside the transaction that marks a row. Only a channel that
reaches a person (``email``, ``webhook``, ``apprise:<n>``) moves a state; a sink's
outcome never does (:mod:`monitor.alerts.states`). An incident notice or a rate-cap
summary carries several alerts: once a person's channel accepted it, each ``open`` or
``failed`` alert it names is ``notified``; when all its deliveries to people failed,
each ``open`` one is ``failed``.
"""

from __future__ import annotations

from monitor.alerts.routing import PERSON_CHANNEL_SQL, is_person_channel
from monitor.alerts.states import SYSTEM_ACTOR, AlertState
from monitor.alerts.store.db import Database, Row
from monitor.alerts.store.rows import write_history

__all__ = ["after_failed", "after_notice_failed", "after_notice_sent", "after_sent"]


def after_sent(conn: Database, delivery_id: int) -> None:
    """A delivery was sent: a person's channel makes its alert (or the alerts its notice carries) ``notified``."""
    row = conn.execute(
        # Locks the alert (PostgreSQL) before its state is read: an acknowledgement by
        # another instance in between is never overwritten.
        f"""SELECT d.alert_id, d.channel, d.recipient_id, d.sent_at, a.state, a.manager_id
        FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
        WHERE d.delivery_id = ?{conn.for_update}""",
        (delivery_id,),
    ).fetchone()
    if row is None:  # a digest's or an incident notice's row: no alert of its own
        after_notice_sent(conn, delivery_id)
        return
    if not is_person_channel(row["channel"]):
        return  # a sink recorded it: nobody was told, the state stays
    state: AlertState = row["state"]
    new_state: AlertState = "notified" if state in ("open", "failed") else state
    if new_state != state:
        conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (new_state, row["alert_id"]))
    write_history(conn, row["alert_id"], "notified", state, new_state,
                   row["recipient_id"] or row["manager_id"], row["channel"], None, row["sent_at"])


def after_failed(conn: Database, delivery_id: int) -> None:
    """A delivery failed for good: when no delivery of its alert to a person is left, the ``open`` alert is ``failed``."""
    row = conn.execute(
        # Locked as in after_sent; the count below then sees every other delivery of
        # the alert that another instance marked before it released the alert.
        f"""SELECT d.alert_id, d.channel, d.last_error, d.updated_at, a.state
        FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
        WHERE d.delivery_id = ?{conn.for_update}""",
        (delivery_id,),
    ).fetchone()
    if row is None:  # a digest's, notice's or summary's row (no alert of its own)
        after_notice_failed(conn, delivery_id)
        return
    if row["state"] != "open" or not is_person_channel(row["channel"]):
        return  # a sink that failed tells nothing about whether a person was told
    others = conn.execute(
        f"""SELECT count(*) FROM deliveries d WHERE d.alert_id = ? AND d.status != 'failed'
        AND {PERSON_CHANNEL_SQL}""",
        (row["alert_id"],),
    ).fetchone()[0]
    if others:
        return
    conn.execute("UPDATE alerts SET state = 'failed' WHERE alert_id = ?", (row["alert_id"],))
    write_history(conn, row["alert_id"], "failed", "open", "failed", SYSTEM_ACTOR, row["channel"],
                   row["last_error"], row["updated_at"])


def _carried_alerts(conn: Database, delivery_id: int) -> tuple[Row, list[Row]] | None:
    """The outbox row of a summary or an opened/update notice, and the ``open``/``failed`` alerts it names.

    ``None`` for any other row (a digest, a resolved or escalation notice). The alerts
    are locked (PostgreSQL) in alert order before their states are read, as in
    ``after_sent``. ``row["note"]`` says which message carried them.
    """
    summary = conn.execute(
        """SELECT d.channel, d.recipient_id, d.sent_at, d.updated_at, d.last_error, d.alert_id,
            s.manager_id FROM deliveries d JOIN summaries s ON s.summary_id = d.alert_id
        WHERE d.delivery_id = ?""", (delivery_id,)).fetchone()
    if summary is not None:
        alerts = conn.execute(
            "SELECT alert_id, state FROM alerts WHERE summary_id = ? AND state IN ('open', 'failed') "
            f"ORDER BY alert_id{conn.for_update}", (summary["alert_id"],)).fetchall()
        return summary, alerts
    row = conn.execute(
        """SELECT d.channel, d.recipient_id, d.sent_at, d.updated_at, d.last_error, d.alert_id,
            n.incident_id, n.manager_id, n.kind
        FROM deliveries d JOIN incident_notices n ON n.notice_id = d.alert_id
        WHERE d.delivery_id = ?""", (delivery_id,)).fetchone()
    if row is None or row["kind"] in ("resolved", "escalated"):
        return None
    alerts = conn.execute(
        f"""SELECT a.alert_id, a.state FROM incident_alerts l JOIN alerts a ON a.alert_id = l.alert_id
        WHERE l.incident_id = ? AND l.manager_id = ? AND a.state IN ('open', 'failed')
          AND l.linked_at <= ? ORDER BY a.alert_id{conn.for_update}""",
        (row["incident_id"], row["manager_id"], row["sent_at"] or row["updated_at"])).fetchall()
    return row, alerts


def after_notice_failed(conn: Database, delivery_id: int) -> None:
    """A notice's or summary's delivery failed for good: see :func:`after_failed`, for the alerts it carries."""
    # A notice or summary whose deliveries to people all failed: the open alerts it
    # carried reached nobody, so they are failed too (a re-send makes them open again).
    found = _carried_alerts(conn, delivery_id)
    if found is None:
        return
    row, alerts = found
    others = conn.execute(
        f"""SELECT count(*) FROM deliveries d WHERE d.alert_id = ? AND d.status != 'failed'
        AND {PERSON_CHANNEL_SQL}""", (row["alert_id"],)).fetchone()[0]
    if others:
        return
    for alert in alerts:
        if alert["state"] != "open":
            continue
        conn.execute("UPDATE alerts SET state = 'failed' WHERE alert_id = ?", (alert["alert_id"],))
        write_history(conn, alert["alert_id"], "failed", "open", "failed", SYSTEM_ACTOR,
                       row["channel"], f"{row['alert_id']}: {row['last_error'] or 'failed'}",
                       row["updated_at"])


def after_notice_sent(conn: Database, delivery_id: int) -> None:
    """A notice's or summary's delivery was sent: see :func:`after_sent`, for the alerts it carries."""
    # An incident notice names its manager's clients: each of their alerts that nobody
    # was told of yet is now notified, with the channel and the incident in its history.
    # A summary does the same for the capped alerts it lists. Only through a channel
    # that reaches a person (notices and summaries are routed to people only).
    found = _carried_alerts(conn, delivery_id)
    if found is None or not is_person_channel(found[0]["channel"]):
        return
    row, alerts = found
    # sqlite3.Row's "in" looks at values, not names: ask its keys.
    where = (f"in summary {row['alert_id']} (rate cap)" if "incident_id" not in row.keys()  # noqa: SIM118
             else f"in the notice of incident {row['incident_id']}")
    for alert in alerts:
        conn.execute("UPDATE alerts SET state = 'notified' WHERE alert_id = ?", (alert["alert_id"],))
        write_history(conn, alert["alert_id"], "notified", alert["state"], "notified",
                       row["recipient_id"] or row["manager_id"], row["channel"], where, row["sent_at"])
