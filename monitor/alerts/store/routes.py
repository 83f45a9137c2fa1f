"""What a write of the alert store knows of routing, and the outbox rows that follow from it.

Who gets a message, through which channel and when is decided by
:mod:`monitor.alerts.routing` (channels per severity) and
:mod:`monitor.alerts.preferences` (away, backups, working hours); the store records
the outcome as outbox rows (``deliveries``). :class:`Routes` carries what
:meth:`~monitor.alerts.store.AlertStore.record` was told about the configured
channels, sinks, managers, storm control and the rate cap into the functions that
enqueue; the functions here write rows for a recipient already chosen. Where the
caller can decide before the store reads its rows, it hands the decision in as a
:data:`RouteChoice` (the summary job, the delivery fallback). Each runs
inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.routing import RECORD_SINKS
from monitor.alerts.store.db import Database
from monitor.alerts.store.rows import scrubbed
from monitor.domain import Manager, Severity
from monitor.incidents.rules import IncidentRules

__all__ = ["RouteChoice", "Routes", "enqueue_sinks", "enqueue_to_manager", "manager_of_latest_alert"]

#: The caller's routing decision, handed to the store: for a message meant for this
#: manager at this severity, who receives it (the manager, or whoever covers them) and
#: through which route keys (``email``, ``webhook``, ``apprise:<n>``), best first.
RouteChoice = Callable[[Manager, Severity], tuple[Manager, Sequence[str]]]


@dataclass(frozen=True, slots=True)
class Routes:
    """The routing inputs of one :meth:`~monitor.alerts.store.AlertStore.record` call.

    Attributes:
        enabled: manager channels that are configured (``email``, ``webhook``, ``apprise:<n>``).
        sinks: global sinks every new alert goes to (``console``, ``jsonl``, ``alertmanager``).
        managers: ``manager_id`` → registry entry, for backups and current contacts;
            ``None`` when the caller gave none.
        incidents: storm control (``None``: every alert on its own).
        rate_limit: the per-manager message cap (``None``: no cap).
    """

    enabled: tuple[str, ...]
    sinks: tuple[str, ...]
    managers: Mapping[str, Manager] | None = None
    incidents: IncidentRules | None = None
    rate_limit: RateLimit | None = None


def enqueue_sinks(
    conn: Database, alert_id: str, routes: Routes, stamp: str, *, record_only: bool = False
) -> int:
    """Enqueue an alert to every global sink (``record_only``: only the ones that merely record).

    Sinks are not people: an alert inside an incident still goes to each of them. A
    late alert goes to the record-only ones (never to Alertmanager, which pages).

    Returns:
        Outbox rows added (a row already there is not added twice).
    """
    return sum(conn.execute(
        """INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at,
            created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING""",
        (alert_id, sink, stamp, stamp, stamp)).rowcount
        for sink in routes.sinks if not record_only or sink in RECORD_SINKS)


def enqueue_to_manager(
    conn: Database, alert_id: str, manager: Manager, channels: Sequence[str], stamp: str
) -> int:
    """Enqueue a message to another manager than the alert's own, due at ``stamp``.

    One row per channel the manager has (``email`` if an address, ``webhook`` if a
    URL) among ``channels``, unique on ``(alert_id, channel, recipient_id)``; the
    manager's contact details are kept on the row.

    Returns:
        Outbox rows added (0 when they were already there).
    """
    count = 0
    for channel, wanted in (("email", manager.email), ("webhook", manager.webhook_url)):
        if not wanted or channel not in channels:
            continue
        row = conn.execute(
            """INSERT INTO deliveries
                (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at,
                 recipient_id, recipient_name, recipient_email, recipient_webhook_url,
                 recipient_timezone)
            VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT DO NOTHING""",
            (alert_id, channel, stamp, stamp, stamp, manager.manager_id, scrubbed(manager.name),
             manager.email, manager.webhook_url, manager.timezone),
        )
        count += row.rowcount
    return count


def manager_of_latest_alert(conn: Database, manager_id: str) -> Manager:
    """A manager as their latest stored alert knows them (when the registry no longer names them)."""
    row = conn.execute(
        """SELECT manager_id, manager_name, manager_email, manager_webhook_url, manager_timezone
        FROM alerts WHERE manager_id = ? ORDER BY created_at DESC LIMIT 1""", (manager_id,)).fetchone()
    return Manager(manager_id=row["manager_id"], name=row["manager_name"], email=row["manager_email"],
                   webhook_url=row["manager_webhook_url"], timezone=row["manager_timezone"])
