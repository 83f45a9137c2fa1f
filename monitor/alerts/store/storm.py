"""The alert store's storm control and rate cap: incidents, their notices, rate-cap summaries.

A mixin of :class:`~monitor.alerts.store.AlertStore` and the helpers
:meth:`~monitor.alerts.store.AlertStore.record`, ``escalate`` and the outbox call
inside their transactions. The incident detector is :mod:`monitor.incidents`; the
cap's policy is :mod:`monitor.alerts.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from monitor.alerts.preferences import covering_manager
from monitor.alerts.ratelimit import Summary, summary_id_for
from monitor.alerts.routing import PERSON_CHANNEL_SQL, RECORD_SINKS, channels_for, is_person_channel
from monitor.alerts.states import SYSTEM_ACTOR, AlertState
from monitor.alerts.store.db import Database, Row
from monitor.alerts.store.rows import (
    _MAX_PAGE,
    StoreConnection,
    _alert,
    _clean_text,
    _delivery,
    _dt,
    _enqueue_for,
    _retried,
    _Routes,
    _ts,
    _write_history,
)
from monitor.domain import SEVERITIES, Alert, Delivery, Manager, VipFailure
from monitor.incidents.model import Incident, IncidentChange, NoticeKind, notice_id_for

__all__ = [
    "StormCounts",
    "StormQueries",
    "_after_notice_failed",
    "_after_notice_sent",
    "_apply_incident_changes",
    "_at_cap",
    "_enqueue_escalation_notice",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StormCounts:
    """Storm control and the rate cap over the whole store (:meth:`AlertStore.storm_counts`).

    Attributes:
        incidents_opened: incidents ever recorded, by scope.
        incidents_open: incidents not ended, by scope.
        incidents_flapping: incidents marked flapping, by scope.
        notices_sent: incident notices the channels accepted, by kind (opened,
            update, resolved, escalated), one per channel.
        alerts_linked: alerts linked to an incident.
        alerts_merged: alerts whose own message was folded into an incident notice.
        alerts_capped: alerts held by the per-manager rate cap.
        summaries: rate-cap summaries claimed.
    """

    incidents_opened: dict[str, int]
    incidents_open: dict[str, int]
    incidents_flapping: dict[str, int]
    notices_sent: dict[str, int]
    alerts_linked: int
    alerts_merged: int
    alerts_capped: int
    summaries: int


class StormQueries(StoreConnection):
    """Storm control (incidents and their notices) and the rate cap of :class:`AlertStore`."""

    # -- the per-manager rate cap (monitor/alerts/ratelimit.py) ----------------------

    @_retried
    def claim_summaries(
        self,
        cutoff: datetime,
        *,
        at: datetime,
        managers: Mapping[str, Manager],
        channels: Sequence[str] = ("email", "webhook"),
    ) -> list[Summary]:
        """Claim each manager's capped alerts into one summary, when the oldest waited enough.

        In one transaction per call: for each manager whose oldest capped alert not yet
        in a summary was capped at or before ``cutoff``, insert the summary (its ID
        derives from the manager and that alert's time: a second instance inserts
        nothing), stamp the alerts with it and enqueue it to whoever covers the
        manager, on their channels for the highest severity among the alerts.

        Returns:
            The summaries claimed by this call.
        """
        stamp = _ts(at)
        claimed: list[Summary] = []
        with self._lock, self._transaction() as conn:
            rows = conn.execute(
                """SELECT manager_id, min(capped_at) AS first, max(capped_at) AS last,
                    max(severity_rank) AS rank FROM alerts
                WHERE capped_at IS NOT NULL AND summary_id IS NULL
                GROUP BY manager_id HAVING min(capped_at) <= ? ORDER BY manager_id""",
                (_ts(cutoff),)).fetchall()
            for row in rows:
                summary_id = summary_id_for(row["manager_id"], _dt(row["first"]))
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
                manager = managers.get(row["manager_id"]) or _manager_of_latest_alert(conn, row["manager_id"])
                recipient = covering_manager(manager, managers, at).manager
                for route in channels_for(recipient, SEVERITIES[row["rank"]], channels):
                    conn.execute(
                        """INSERT INTO deliveries
                            (alert_id, channel, status, attempts, next_attempt_at, created_at,
                             updated_at, recipient_id, recipient_name, recipient_email,
                             recipient_webhook_url, recipient_timezone)
                        VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                        (summary_id, route.channel, stamp, stamp, stamp, recipient.manager_id,
                         _clean_text(recipient.name), recipient.email, recipient.webhook_url,
                         recipient.timezone))
                claimed.append(Summary(summary_id=summary_id, manager_id=row["manager_id"],
                                       period_start=_dt(row["first"]), period_end=_dt(row["last"]),
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
                       period_start=_dt(row["period_start"]), period_end=_dt(row["period_end"]),
                       alert_count=row["alert_count"], created_at=_dt(row["created_at"]))

    def summary_alerts(self, summary_id: str) -> list[tuple[Alert, AlertState]]:
        """The alerts of a summary with their lifecycle state, oldest first (no deliveries)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alerts WHERE summary_id = ? ORDER BY created_at, alert_id",
                (summary_id,)).fetchall()
        return [(_alert(row, ()), row["state"]) for row in rows]

    # -- storm control: incidents and their notices (monitor/incidents/) -------------

    @staticmethod
    def _enqueue_sinks(
        conn: Database, alert_id: str, routes: _Routes, stamp: str, *, record_only: bool = False
    ) -> int:
        # Sinks are not people: an alert inside an incident still goes to each of them.
        # A late alert goes to the record-only ones (never to Alertmanager, which pages).
        return sum(conn.execute(
            """INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at,
                created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (alert_id, sink, stamp, stamp, stamp)).rowcount
            for sink in routes.sinks if not record_only or sink in RECORD_SINKS)

    def _link_to_incident(
        self, conn: Database, incident_id: str, alert_id: str, failure: VipFailure,
        routes: _Routes, stamp: str,
    ) -> int:
        return self._link(conn, incident_id, alert_id, failure.manager, failure.severity, routes, stamp)

    def _link_events(
        self, conn: Database, incident_id: str, event_ids: Sequence[str], routes: _Routes, stamp: str
    ) -> int:
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
                or _manager_of_latest_alert(conn, alert["manager_id"])
            count += self._link(conn, incident_id, alert["alert_id"], manager, alert["severity"],
                                routes, stamp)
        return count

    def _link(
        self, conn: Database, incident_id: str, alert_id: str, manager: Manager,
        severity: str, routes: _Routes, stamp: str,
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
        now = _dt(stamp)
        if latest is None:
            wait = rules.group_wait_seconds if rules is not None else 0.0
            return self._enqueue_notice(conn, incident_id, manager, "opened", 1,
                                        now + timedelta(seconds=wait), severity, routes, stamp)
        if latest["waiting"]:
            return 0  # rendered when it is sent: it will name this client too
        interval = rules.group_interval_seconds if rules is not None else 0.0
        due = max(now, _dt(latest["created_at"]) + timedelta(seconds=interval))
        return self._enqueue_notice(conn, incident_id, manager, "update", latest["seq"] + 1,
                                    due, severity, routes, stamp)

    @staticmethod
    def _enqueue_notice(
        conn: Database, incident_id: str, manager: Manager, kind: NoticeKind, seq: int,
        due: datetime, severity: str, routes: _Routes, stamp: str,
    ) -> int:
        notice_id = notice_id_for(incident_id, manager.manager_id, seq)
        if not conn.execute(
            """INSERT INTO incident_notices (notice_id, incident_id, manager_id, kind, seq, created_at)
            VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (notice_id, incident_id, manager.manager_id, kind, seq, stamp)).rowcount:
            return 0
        # The same routing as an alert: an away manager's backup, the per-severity channels.
        current = (routes.managers or {}).get(manager.manager_id, manager)
        recipient = covering_manager(current, routes.managers or {}, _dt(stamp)).manager
        count = 0
        for route in channels_for(recipient, severity, routes.enabled):  # type: ignore[arg-type]
            count += conn.execute(
                """INSERT INTO deliveries
                    (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at,
                     recipient_id, recipient_name, recipient_email, recipient_webhook_url,
                     recipient_timezone)
                VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (notice_id, route.channel, _ts(due), stamp, stamp, recipient.manager_id,
                 _clean_text(recipient.name), recipient.email, recipient.webhook_url,
                 recipient.timezone)).rowcount
        return count

    def _enqueue_resolved_notices(
        self, conn: Database, incident_id: str, routes: _Routes, stamp: str
    ) -> int:
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
            count += self._enqueue_notice(conn, incident_id, manager, "resolved", row["seq"] + 1,
                                          _dt(stamp), SEVERITIES[row["rank"]], routes, stamp)
        return count

    def get_incident(self, incident_id: str) -> Incident | None:
        """Return one incident with its alert and manager counts, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                f"{_INCIDENT_SELECT} WHERE i.incident_id = ? GROUP BY i.incident_id",
                (incident_id,)).fetchone()
        return None if row is None else _incident(row)

    def list_incidents(self, *, open_only: bool = False, top_level: bool = False,
                       limit: int = 100) -> list[Incident]:
        """Return incidents, the latest start first.

        Args:
            open_only: only incidents that have not ended.
            top_level: leave out incidents held by a broader one (``parent_id`` set).
            limit: most incidents to return, 1–500.

        Raises:
            ValueError: a bad ``limit``.
        """
        if not 1 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {_MAX_PAGE}")
        clauses = [c for c, wanted in (("i.ended_at IS NULL", open_only),
                                       ("i.parent_id IS NULL", top_level)) if wanted]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"""{_INCIDENT_SELECT} {where} GROUP BY i.incident_id
                ORDER BY i.started_at DESC, i.incident_id DESC LIMIT ?""", (limit,)).fetchall()
        return [_incident(row) for row in rows]

    def incident_of(self, alert_id: str) -> str | None:
        """The incident an alert is linked to, ``None`` if none."""
        with self._lock:
            row = self._conn.execute(
                "SELECT incident_id FROM incident_alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else row["incident_id"]

    def incident_notice(self, notice_id: str) -> tuple[str, str, NoticeKind, int, datetime] | None:
        """``(incident_id, manager_id, kind, seq, created_at)`` of a notice, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM incident_notices WHERE notice_id = ?", (notice_id,)).fetchone()
        if row is None:
            return None
        return row["incident_id"], row["manager_id"], row["kind"], row["seq"], _dt(row["created_at"])

    def storm_counts(self) -> StormCounts:
        """What storm control and the rate cap did, counted over the whole store (for metrics)."""
        with self._lock:
            conn = self._conn
            incidents = conn.execute(
                """SELECT scope, count(*) AS opened,
                    sum(CASE WHEN ended_at IS NULL THEN 1 ELSE 0 END) AS still_open,
                    sum(CASE WHEN flapping = 1 THEN 1 ELSE 0 END) AS flapping
                FROM incidents GROUP BY scope""").fetchall()
            notices = conn.execute(
                """SELECT n.kind, count(*) AS sent FROM deliveries d
                JOIN incident_notices n ON n.notice_id = d.alert_id
                WHERE d.status = 'sent' GROUP BY n.kind""").fetchall()
            merged = conn.execute(
                "SELECT count(DISTINCT alert_id) FROM deliveries WHERE status = 'merged'").fetchone()[0]
            linked = conn.execute("SELECT count(*) FROM incident_alerts").fetchone()[0]
            capped = conn.execute("SELECT count(*) FROM alerts WHERE capped_at IS NOT NULL").fetchone()[0]
            summaries = conn.execute("SELECT count(*) FROM summaries").fetchone()[0]
        return StormCounts(
            incidents_opened={row["scope"]: int(row["opened"]) for row in incidents},
            incidents_open={row["scope"]: int(row["still_open"] or 0) for row in incidents},
            incidents_flapping={row["scope"]: int(row["flapping"] or 0) for row in incidents},
            notices_sent={row["kind"]: int(row["sent"]) for row in notices},
            alerts_linked=int(linked), alerts_merged=int(merged), alerts_capped=int(capped),
            summaries=int(summaries))

    def incident_notice_created(self, incident_id: str, manager_id: str, seq: int) -> datetime | None:
        """When the ``seq``-th notice of an incident to a manager was created, ``None`` if never."""
        with self._lock:
            row = self._conn.execute(
                "SELECT created_at FROM incident_notices WHERE incident_id = ? AND manager_id = ? AND seq = ?",
                (incident_id, manager_id, seq)).fetchone()
        return None if row is None else _dt(row["created_at"])

    def incident_alerts(
        self, incident_id: str, manager_id: str | None = None
    ) -> list[tuple[Alert, AlertState, datetime]]:
        """Alerts linked to an incident (of one manager's clients if given), oldest first.

        Returns:
            ``(alert, lifecycle state, linked_at)`` triples; the alerts carry their deliveries.
        """
        clause, params = (("AND l.manager_id = ?", (incident_id, manager_id)) if manager_id
                          else ("", (incident_id,)))
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT a.*, l.linked_at FROM incident_alerts l JOIN alerts a ON a.alert_id = l.alert_id
                WHERE l.incident_id = ? {clause} ORDER BY a.first_event_at, a.alert_id""",
                params).fetchall()
            ids = [row["alert_id"] for row in rows]
            deliveries = self._conn.execute(
                f"SELECT * FROM deliveries WHERE alert_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY delivery_id", ids).fetchall() if ids else []
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for delivery_row in deliveries:
            by_alert.setdefault(delivery_row["alert_id"], []).append(_delivery(delivery_row))
        return [(_alert(row, tuple(by_alert.get(row["alert_id"], ()))), row["state"],
                 _dt(row["linked_at"])) for row in rows]


def _at_cap(conn: Database, alert_id: str, manager_id: str, routes: _Routes,
            now: datetime) -> bool:
    # Messages the manager got in the window: their alerts that went (or go) out on
    # their own (not folded into an incident, not capped), incident notices, summaries.
    limit = routes.rate_limit
    if limit is None:
        return False
    since = _ts(now - timedelta(seconds=limit.per_seconds))
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


def _manager_of_latest_alert(conn: Database, manager_id: str) -> Manager:
    row = conn.execute(
        """SELECT manager_id, manager_name, manager_email, manager_webhook_url, manager_timezone
        FROM alerts WHERE manager_id = ? ORDER BY created_at DESC LIMIT 1""", (manager_id,)).fetchone()
    return Manager(manager_id=row["manager_id"], name=row["manager_name"], email=row["manager_email"],
                   webhook_url=row["manager_webhook_url"], timezone=row["manager_timezone"])


_INCIDENT_SELECT: Final = """SELECT i.*, count(l.alert_id) AS alert_count,
    count(DISTINCT l.manager_id) AS manager_count
    FROM incidents i LEFT JOIN incident_alerts l ON l.incident_id = i.incident_id"""


def _apply_incident_changes(
    conn: Database, changes: Sequence[IncidentChange], stamp: str
) -> dict[str, str]:
    # Returns <detector's incident_id: stored incident_id>: when another instance (or
    # an earlier run) already opened an incident for the scope key, its ID is kept.
    stored: dict[str, str] = {}
    for change in changes:
        note = (f"flapping: failed again {change.relapses} times after recovering"
                if change.flapping else None)
        values = (_ts(change.last_failure_at), change.failures, change.cards, change.terminals,
                  change.relapses, int(change.flapping), note, stamp)
        if change.kind == "opened":
            conn.execute(
                """INSERT INTO incidents (incident_id, scope, scope_key, started_at, last_failure_at,
                    failures, cards, terminals, relapses, flapping, note, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (change.incident_id, change.scope, _clean_text(change.scope_key),
                 _ts(change.started_at), *values, stamp))
            row = conn.execute(
                "SELECT incident_id FROM incidents WHERE scope = ? AND scope_key = ? AND ended_at IS NULL",
                (change.scope, _clean_text(change.scope_key))).fetchone()
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
                (_ts(change.ended_at), stamp, target))
        stored[change.incident_id] = target
    return stored


def _incident(row: Row) -> Incident:
    return Incident(
        incident_id=row["incident_id"], scope=row["scope"], scope_key=row["scope_key"],
        started_at=_dt(row["started_at"]), last_failure_at=_dt(row["last_failure_at"]),
        ended_at=_dt(row["ended_at"]) if row["ended_at"] else None, failures=row["failures"],
        cards=row["cards"], terminals=row["terminals"], relapses=row["relapses"],
        flapping=bool(row["flapping"]), note=row["note"], created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]), alert_count=row["alert_count"],
        manager_count=row["manager_count"], parent_id=row["parent_id"])


def _enqueue_escalation_notice(
    conn: Database, incident_id: str, manager_id: str, step_index: int,
    recipient: Manager, channels: Sequence[str], stamp: str,
) -> int:
    # Escalation notices take negative sequence numbers (-1 for the first step), so
    # they never collide with the manager's own notices (1, 2, ...).
    seq = -(step_index + 1)
    notice_id = notice_id_for(incident_id, manager_id, seq)
    if not conn.execute(
        """INSERT INTO incident_notices (notice_id, incident_id, manager_id, kind, seq, created_at)
        VALUES (?, ?, ?, 'escalated', ?, ?) ON CONFLICT DO NOTHING""",
        (notice_id, incident_id, manager_id, seq, stamp)).rowcount:
        return 0
    return _enqueue_for(conn, notice_id, recipient, channels, stamp)


def _carried_alerts(conn: Database, delivery_id: int) -> tuple[Row, list[Row]] | None:
    """The outbox row of a summary or an opened/update notice, and the ``open``/``failed`` alerts it names.

    ``None`` for any other row (a digest, a resolved or escalation notice). The alerts
    are locked (PostgreSQL) in alert order before their states are read, as in
    ``_after_sent``. ``row["note"]`` says which message carried them.
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


def _after_notice_failed(conn: Database, delivery_id: int) -> None:
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
        _write_history(conn, alert["alert_id"], "failed", "open", "failed", SYSTEM_ACTOR,
                       row["channel"], f"{row['alert_id']}: {row['last_error'] or 'failed'}",
                       row["updated_at"])


def _after_notice_sent(conn: Database, delivery_id: int) -> None:
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
        _write_history(conn, alert["alert_id"], "notified", alert["state"], "notified",
                       row["recipient_id"] or row["manager_id"], row["channel"], where, row["sent_at"])
