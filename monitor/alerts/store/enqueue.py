"""Who a new alert goes to: its manager's channels, a backup, later, capped, or its incident's notice.

:meth:`~monitor.alerts.store.AlertStore.record` calls :func:`route_new_alert` for each
new alert (and for a late alert a fresh failure made news), inside its transaction.
The decisions are routing's and the preferences': who receives it — the manager, or
the first backup who is in when they are away (:mod:`monitor.alerts.preferences`);
when — now, or the start of their next window for a low or medium alert in quiet or
off hours; through what — their per-severity channels (:mod:`monitor.alerts.routing`;
a route key names a target, never its URL). The rate cap
(:func:`~monitor.alerts.store.summaries.at_rate_cap`) and storm control
(:mod:`monitor.alerts.store.incidents`) may take the message instead. Sinks are not
people: they get every alert at once. The alert's ``opened`` history row says what
was done.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from monitor.alerts.preferences import covering_manager, delivery_time, manager_zone
from monitor.alerts.routing import channel_kind, channels_for, default_channels
from monitor.alerts.store.db import Database
from monitor.alerts.store.incidents import link_to_incident
from monitor.alerts.store.routes import Routes, enqueue_sinks
from monitor.alerts.store.rows import clean_note, note_on_opened, parse_utc, scrubbed, utc_text
from monitor.alerts.store.summaries import at_rate_cap
from monitor.domain import AlertEvent, Manager, VipFailure

__all__ = ["enqueue_alert", "route_new_alert"]


def route_new_alert(
    conn: Database, alert_id: str, failure: VipFailure, event: AlertEvent,
    incident_id: str | None, routes: Routes, stamp: str, unroutable: dict[str, None],
) -> int:
    """Enqueue a new alert's messages (or link it to its incident); returns outbox rows added.

    An alert no configured channel reaches is marked ``unroutable`` and added to
    ``unroutable``.
    """
    # A new (or no longer late) alert: its own messages, or its incident's notice.
    rules = routes.incidents
    if incident_id is None:
        hold = (rules.group_wait_seconds if rules is not None
                and event.outcome in rules.outcome_classes else 0.0)
        count, lost = enqueue_alert(conn, alert_id, failure.manager, routes, stamp,
                                    hold_seconds=hold)
    else:
        count = enqueue_sinks(conn, alert_id, routes, stamp)
        count += link_to_incident(conn, incident_id, alert_id, failure, routes, stamp)
        manager = (routes.managers or {}).get(failure.manager.manager_id, failure.manager)
        lost = _unroutable_note(manager, failure.severity, routes.enabled)
        if lost:
            note_on_opened(conn, alert_id, lost)
    if lost:
        conn.execute("UPDATE alerts SET unroutable = 1 WHERE alert_id = ?", (alert_id,))
        unroutable[alert_id] = None
    return count


def enqueue_alert(
    conn: Database, alert_id: str, manager: Manager, routes: Routes, stamp: str,
    *, hold_seconds: float = 0.0,
) -> tuple[int, str | None]:
    """Enqueue an alert to whoever covers ``manager`` and to the sinks.

    Returns:
        ``(outbox rows added, why no channel reaches the recipient or None)``.
    """
    # Returns (outbox rows added, why no channel reaches the recipient or None).
    # Who receives it: the manager, or the first backup who is in when they are away
    # (preferences.py); when: now, or the start of their next window for a low or
    # medium alert in quiet or off hours; through what: their per-severity channels
    # (routing.py; a route key names a target, never its URL). Sinks are not people:
    # they get every alert at once. The alert's "opened" history row says what was done.
    severity = conn.execute(
        "SELECT severity FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()[0]
    now = parse_utc(stamp)
    coverage = covering_manager(manager, routes.managers or {}, now)
    recipient = coverage.manager
    due = max(delivery_time(recipient, severity, now), now + timedelta(seconds=hold_seconds))
    other = recipient.manager_id != manager.manager_id
    rows = [(route.channel, utc_text(due), recipient if other else None)
            for route in channels_for(recipient, severity, routes.enabled)]
    lost = None if rows else _unroutable_note(recipient, severity, routes.enabled)
    capped = rows and at_rate_cap(conn, alert_id, manager.manager_id, routes, now)
    if capped:
        rows = []
        conn.execute("UPDATE alerts SET capped_at = ? WHERE alert_id = ?", (stamp, alert_id))
    rows += [(sink, stamp, None) for sink in routes.sinks if sink not in [r[0] for r in rows]]
    count = 0
    for channel, next_attempt_at, to in rows:
        count += conn.execute(
            """INSERT INTO deliveries
                (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at,
                 recipient_id, recipient_name, recipient_email, recipient_webhook_url,
                 recipient_timezone)
            VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT DO NOTHING""",
            (alert_id, channel, next_attempt_at, stamp, stamp,
             *((to.manager_id, scrubbed(to.name), to.email, to.webhook_url, to.timezone)
               if to is not None else ("", None, None, None, None))),
        ).rowcount
    notes = [coverage.note] if coverage.note else []
    if lost:
        notes.append(lost)
    if capped and routes.rate_limit is not None:
        notes.append(f"rate cap: {manager.manager_id} had {routes.rate_limit.max_messages} messages "
                     f"in {routes.rate_limit.per_seconds} s; this alert goes in their next summary")
    elif hold_seconds and due == now + timedelta(seconds=hold_seconds):
        notes.append(f"held {hold_seconds:g} s for storm control: an incident may take it in")
    elif due > now:
        local = due.astimezone(manager_zone(recipient)).strftime("%a %d %b %Y %H:%M %Z")
        notes.append(f"{severity} alert held for {recipient.manager_id}'s working hours: "
                     f"due {local}")
    if notes:
        note_on_opened(conn, alert_id, clean_note("; ".join(notes)) or "")
    return count, lost


def _unroutable_note(manager: Manager, severity: str, enabled: Sequence[str]) -> str | None:
    """Why no configured channel reaches ``manager`` at ``severity``; ``None`` when one does or they muted it."""
    wanted = manager.channels.get(severity)  # type: ignore[call-overload]
    if wanted == () or channels_for(manager, severity, enabled):  # type: ignore[arg-type]
        return None
    kinds = sorted({channel_kind(key) for key in (wanted or default_channels(manager))})
    has = f"their channels: {', '.join(kinds)}" if kinds else "no e-mail address, webhook or Apprise URL"
    return (f"unroutable: no configured channel reaches {manager.manager_id} at {severity} "
            f"({has}; configured: {', '.join(enabled) or 'none'})")
