"""What one what-if run left in its throwaway alert store, counted per manager.

Read with :mod:`sqlite3` (read-only) from the run's SQLite file once the run is
over: the store's own tables are the record of what the monitor decided, and this
module only counts them. A *message* is one outbox message to one person, whatever
the number of channels it goes on (e-mail and webhook of one alert are one
notification); outbox rows folded into an incident (``merged``) are not messages.
The kinds:

* ``notifications``: an alert's own message (not folded into an incident notice,
  not held by the rate cap; late alerts cannot occur: the what-if turns lateness off);
* ``incident_notices``: storm-control notices (the first, updates, the resolved one);
* ``summaries``: rate-cap summaries;
* ``digests``: daily digests that hold at least one alert (a claimed digest of an
  empty day sends nothing).

A message counts for whoever receives it (a backup covering an away manager gets
it); ``alerts`` counts the alerts of each manager's own clients.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Literal

__all__ = ["MESSAGE_KINDS", "AlertRow", "DeliveryKind", "IncidentRow", "ManagerCounts", "Outcome",
           "next_summary_due", "open_reader", "read_outcome"]

#: The message kinds counted per manager, in table order.
MESSAGE_KINDS: Final = ("notifications", "incident_notices", "summaries", "digests")

#: How an alert reached its manager: on its own (``own``, also when an incident took it
#: in after its message went out), only in an incident notice (``incident``), in a
#: rate-cap summary (``capped``), not at all as no configured channel reaches them
#: (``unroutable``), or not at all as they muted its severity (``muted``).
DeliveryKind = Literal["own", "incident", "capped", "unroutable", "muted"]


@dataclass(frozen=True, slots=True)
class ManagerCounts:
    """One manager's counts in one run.

    Attributes:
        alerts: alerts of the manager's clients.
        notifications: alert messages received on their own.
        incident_notices: incident notices received.
        summaries: rate-cap summaries received.
        digests: daily digests received (with at least one alert).
    """

    alerts: int = 0
    notifications: int = 0
    incident_notices: int = 0
    summaries: int = 0
    digests: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name (``alerts`` then :data:`MESSAGE_KINDS`)."""
        return {"alerts": self.alerts, "notifications": self.notifications,
                "incident_notices": self.incident_notices, "summaries": self.summaries,
                "digests": self.digests}


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert of a run.

    Attributes:
        alert_id: ``al-`` ID derived from client and window start (same in both runs
            when the grouping window is).
        customer_id: the client.
        customer_name: the client's name.
        manager_id: the client's manager.
        severity: ``low``, ``medium`` or ``high`` (the most severe of its failures).
        window_start: start of its grouping window (UTC).
        events: failures in it.
        delivery: how it reached the manager (:data:`DeliveryKind`).
    """

    alert_id: str
    customer_id: str
    customer_name: str
    manager_id: str
    severity: str
    window_start: datetime
    events: int
    delivery: DeliveryKind


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One storm-control incident of a run.

    Attributes:
        incident_id: its ID.
        scope: ``terminal``, ``merchant``, ``region``, ``issuer`` or ``network``.
        scope_key: the terminal, merchant, region, IIN or ``fleet``.
        started_at: event time of its first failure (UTC).
        ended: whether it ended within the recording.
        failures: outage failures counted in it.
        alerts: VIP alerts linked to it.
    """

    incident_id: str
    scope: str
    scope_key: str
    started_at: datetime
    ended: bool
    failures: int
    alerts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run's store holds.

    Attributes:
        managers: counts per manager ID (managers with an alert or a message only).
        alerts: every alert, by window start then ID.
        incidents: every incident, by start then ID.
    """

    managers: Mapping[str, ManagerCounts]
    alerts: tuple[AlertRow, ...]
    incidents: tuple[IncidentRow, ...]


_MESSAGES: Final = """
SELECT DISTINCT d.alert_id AS message_id,
    CASE WHEN a.alert_id IS NOT NULL THEN 'notifications'
         WHEN n.notice_id IS NOT NULL THEN 'incident_notices'
         WHEN s.summary_id IS NOT NULL THEN 'summaries'
         WHEN g.digest_id IS NOT NULL THEN 'digests' END AS kind,
    CASE WHEN d.recipient_id != '' THEN d.recipient_id ELSE a.manager_id END AS recipient
FROM deliveries d
LEFT JOIN alerts a ON a.alert_id = d.alert_id
LEFT JOIN incident_notices n ON n.notice_id = d.alert_id
LEFT JOIN summaries s ON s.summary_id = d.alert_id
LEFT JOIN digests g ON g.digest_id = d.alert_id
WHERE d.status != 'merged'
"""

_ALERTS: Final = """
SELECT a.alert_id, a.customer_id, a.customer_name, a.manager_id, a.severity, a.window_start,
    a.event_count, a.capped_at IS NOT NULL AS capped, a.unroutable,
    EXISTS (SELECT 1 FROM incident_alerts l WHERE l.alert_id = a.alert_id) AS in_incident,
    EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.alert_id AND d.status != 'merged') AS own
FROM alerts a ORDER BY a.window_start, a.alert_id
"""

_INCIDENTS: Final = """
SELECT i.incident_id, i.scope, i.scope_key, i.started_at, i.ended_at IS NOT NULL AS ended, i.failures,
    (SELECT count(*) FROM incident_alerts l WHERE l.incident_id = i.incident_id) AS alerts
FROM incidents i ORDER BY i.started_at, i.incident_id
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def _delivery(row: sqlite3.Row) -> DeliveryKind:
    # Its own message went out (even when an incident took it in later): "own".
    if row["own"]:
        return "own"
    if row["in_incident"]:
        return "incident"
    if row["capped"]:
        return "capped"
    return "unroutable" if row["unroutable"] else "muted"


def read_outcome(path: Path) -> Outcome:
    """Count what the store at ``path`` (a closed what-if run's SQLite file) holds.

    Raises:
        sqlite3.Error: the file is not a cardmon alert store.
    """
    with closing(_connect(path)) as conn:
        messages = Counter((row["recipient"], row["kind"]) for row in conn.execute(_MESSAGES)
                           if row["kind"] is not None)
        alerts = tuple(AlertRow(
            alert_id=row["alert_id"], customer_id=row["customer_id"], customer_name=row["customer_name"],
            manager_id=row["manager_id"], severity=row["severity"],
            window_start=datetime.fromisoformat(row["window_start"]), events=row["event_count"],
            delivery=_delivery(row)) for row in conn.execute(_ALERTS))
        incidents = tuple(IncidentRow(
            incident_id=row["incident_id"], scope=row["scope"], scope_key=row["scope_key"],
            started_at=datetime.fromisoformat(row["started_at"]), ended=bool(row["ended"]),
            failures=row["failures"], alerts=row["alerts"]) for row in conn.execute(_INCIDENTS))
    per_manager = Counter(alert.manager_id for alert in alerts)
    names = sorted(set(per_manager) | {manager for manager, _ in messages})
    managers = {name: ManagerCounts(alerts=per_manager[name],
                                    **{kind: messages[name, kind] for kind in MESSAGE_KINDS})
                for name in names}
    return Outcome(managers=managers, alerts=alerts, incidents=incidents)


def next_summary_due(conn: sqlite3.Connection, summary_after_seconds: float) -> datetime | None:
    """When the oldest capped alert not yet in a summary has waited ``summary_after_seconds``.

    Args:
        conn: a connection to the run's store (read-only is enough).
        summary_after_seconds: the rate cap's ``summary_after_seconds``.

    Returns:
        That instant (UTC), or ``None`` when no capped alert waits.
    """
    first = conn.execute(
        "SELECT min(capped_at) FROM alerts WHERE capped_at IS NOT NULL AND summary_id IS NULL").fetchone()[0]
    return None if first is None else datetime.fromisoformat(first) + timedelta(seconds=summary_after_seconds)


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to a run's store, for :func:`next_summary_due` during the run."""
    return _connect(path)
