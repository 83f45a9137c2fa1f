"""Recording VIP failures as alerts: one committed transaction per batch, safe to replay.

What it guarantees, step by step, for one call of :meth:`Recording.record`:

1. open one write transaction (``BEGIN IMMEDIATE`` on SQLite);
2. insert each event keyed by ``event_id`` (``ON CONFLICT DO NOTHING``), alert by
   alert in ``(alert_id, event_id)`` order; an ``event_id`` already stored (a replay
   after a rebalance or a restart, by this instance or another) is ignored and
   counted as a duplicate;
3. add the event to its alert — the failures of one client in one tumbling
   event-time window aligned to the epoch — creating the alert if it is new;
4. for each new alert, enqueue one outbox row per channel (``email``, ``webhook``,
   global sinks), unique on ``(alert_id, channel)`` (:mod:`monitor.alerts.store.enqueue`);
   with a recovery window, start each new alert's recovery watch, or move an existing
   alert's watch on (:func:`~monitor.alerts.store.recoveries.watch_failure`), late
   alerts included;
5. commit (WAL, ``synchronous=FULL``) and only then return, so the caller may
   commit the Kafka offsets of these events.

The alert ID is derived from its content (:func:`alert_id_for`), so processing the
same events again, in any order, on any partition assignment, never creates a
second alert nor a second delivery. No raw PAN is stored: ``card_ref``/``pan_masked``
that look like a PAN are masked and free text is PAN-scrubbed before it is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.states import SYSTEM_ACTOR
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database
from monitor.alerts.store.enqueue import route_new_alert
from monitor.alerts.store.incidents import (
    apply_incident_changes,
    enqueue_resolved_notices,
    link_events,
    link_to_incident,
)
from monitor.alerts.store.recoveries import watch_failure
from monitor.alerts.store.routes import Routes, enqueue_sinks
from monitor.alerts.store.rows import (
    EVENT_COLUMNS,
    note_on_opened,
    scrubbed,
    utc_text,
    write_history,
)
from monitor.domain import SEVERITIES, AlertEvent, Manager, VipFailure
from monitor.ids import alert_id_for
from monitor.incidents.model import IncidentChange
from monitor.incidents.rules import IncidentRules
from monitor.privacy import is_pan, mask_pan

__all__ = ["DEFAULT_WINDOW_SECONDS", "RecordResult", "Recording", "window_start_for"]


#: The issue's grouping window: 10 minutes of event time.
DEFAULT_WINDOW_SECONDS: Final = 600


_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}


_INSERT_EVENT: Final = (
    f"INSERT INTO alert_events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordResult:
    """What one :meth:`AlertStore.record` call changed (all of it committed).

    Attributes:
        new_alert_ids: alerts created by this call, in first-seen order.
        updated_alert_ids: existing alerts that received new events.
        events_inserted: events stored by this call.
        events_duplicate: events ignored because their ``event_id`` was already stored.
        deliveries_enqueued: outbox rows added (only new alerts get rows).
        late_alert_ids: new alerts recorded late (stale events): no person is told.
        unroutable_alert_ids: new alerts whose manager no configured channel reaches.
    """

    new_alert_ids: tuple[str, ...] = ()
    updated_alert_ids: tuple[str, ...] = ()
    events_inserted: int = 0
    events_duplicate: int = 0
    deliveries_enqueued: int = 0
    late_alert_ids: tuple[str, ...] = ()
    unroutable_alert_ids: tuple[str, ...] = ()


def window_start_for(occurred_at: datetime, window_seconds: int = DEFAULT_WINDOW_SECONDS) -> datetime:
    """Return the start of the tumbling event-time window that holds ``occurred_at``.

    Windows are aligned to the Unix epoch, so the result depends only on the event,
    never on processing order.

    Args:
        occurred_at: timezone-aware event time.
        window_seconds: window length in seconds (> 0).

    Returns:
        ``floor(occurred_at / window) * window`` as a UTC datetime.

    Raises:
        ValueError: ``occurred_at`` is naive or ``window_seconds`` is not positive.
    """
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    if window_seconds <= 0:
        raise ValueError("window_seconds must be positive")
    seconds = int(occurred_at.timestamp() // window_seconds) * window_seconds
    return datetime.fromtimestamp(seconds, UTC)




def _clean_card(value: str | None) -> str | None:
    if value is not None and is_pan(value):
        return mask_pan(value)
    return value


def _safe_event(event: AlertEvent) -> AlertEvent:
    """Mask a PAN that slipped into card fields, scrub free text (defence in depth).

    The event itself when nothing needed masking (the common case: no copy).
    """
    card_ref, pan_masked = _clean_card(event.card_ref), _clean_card(event.pan_masked)
    meaning = scrubbed(event.response_meaning)
    if card_ref == event.card_ref and pan_masked == event.pan_masked and meaning == event.response_meaning:
        return event
    return replace(event, card_ref=card_ref, pan_masked=pan_masked, response_meaning=meaning)


class Recording(StoreConnection):
    """Recording VIP failures as alerts in :class:`~monitor.alerts.store.AlertStore`."""

    @retried
    def record(
        self,
        failures: Sequence[VipFailure],
        *,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        sinks: Sequence[str] = (),
        channels: Sequence[str] | None = None,
        now: datetime | None = None,
        managers: Mapping[str, Manager] | None = None,
        incidents: Sequence[IncidentChange] = (),
        incident_rules: IncidentRules | None = None,
        rate_limit: RateLimit | None = None,
        stale_after_seconds: float | None = None,
        fence: Callable[[Database], object] | None = None,
        recovery_window_seconds: float | None = None,
    ) -> RecordResult:
        """Store failures as alerts and enqueue deliveries, in one committed transaction.

        With storm control (``incident_rules``), the batch's incident changes are
        applied first; a failure that carries an ``incident_id`` links its alert to
        that incident, and so does each event a change attributes to its incident
        (``IncidentChange.event_ids``, in the changes' order, after the failures are
        stored); its manager gets one incident notice (``ic-...``) instead of
        a message per alert (:func:`~monitor.alerts.store.incidents.link_to_incident`). An alert belongs to the first
        incident that takes it. A new alert of an outage
        class that no incident holds yet waits ``group_wait_seconds`` before going out
        on its own, so that an incident taking it in meanwhile folds its message. An ended
        incident enqueues a resolved notice to each of its managers who opted in.

        Args:
            failures: VIP failures from one batch, any order.
            window_seconds: grouping window in seconds of event time.
            sinks: global sink channel names every new alert also goes to.
            channels: the manager channels that are configured (``email``, ``webhook``);
                ``None`` means both. A manager's e-mail or webhook gets a delivery only
                when its channel is in here.
            now: wall-clock time of recording (UTC now if ``None``); new deliveries
                are due at once unless the recipient's preferences hold them
                (:func:`monitor.alerts.preferences.delivery_time`).
            managers: the registry's managers by ID, to find the backup of an away
                manager (:func:`monitor.alerts.preferences.covering_manager`); ``None``:
                alerts stay with their own manager.
            incidents: the batch's incident changes (:class:`IncidentChange`).
            incident_rules: the storm-control rules; ``None`` turns it off.
            rate_limit: the per-manager cap (:mod:`monitor.alerts.ratelimit`): a new
                alert whose manager is at the cap gets no message of its own and
                waits for the manager's next summary; ``None``: no cap.
            stale_after_seconds: a new alert whose failure happened longer ago than
                this before ``now`` is *late* (a replay after an outage): it is stored,
                exported and goes to the record-only sinks (``console``, ``jsonl``),
                but no person and no incident notice is told of it, and it never
                escalates. A fresh failure joining it later makes it an ordinary alert
                (then enqueued). ``None``: nothing is late.
            fence: run first inside the transaction, with it; an error it raises
                rolls everything back (scale-out: the incident judge's lease check,
                :meth:`~monitor.alerts.store.fleet_counts.FleetCounts.advance`).
            recovery_window_seconds: the recovery watch window (event time, seconds):
                each stored failure starts or moves its alert's watch
                (``alert_recoveries``); ``None`` or 0: no watch.

        Returns:
            A :class:`RecordResult`; it is returned only after the commit.

        Raises:
            ValueError: an event time is naive.
            sqlite3.Error, psycopg.Error: the database could not be written (nothing
                was committed).
            Exception: whatever ``fence`` raises (nothing was committed).
        """
        if not failures and not incidents and fence is None:
            return RecordResult()
        moment = now or datetime.now(UTC)
        stamp = utc_text(moment)
        enabled = ("email", "webhook") if channels is None else tuple(channels)
        routes = Routes(enabled=enabled, sinks=tuple(sinks), managers=managers,
                         incidents=incident_rules, rate_limit=rate_limit)
        # (alert_id, failure, its safe event, window start), in batch order
        batch: list[tuple[str, VipFailure, AlertEvent, datetime]] = []
        for failure in failures:
            event = _safe_event(failure.event)
            start = window_start_for(event.occurred_at, window_seconds)
            batch.append((alert_id_for(failure.customer_id, start), failure, event, start))
        new: dict[str, None] = {}
        updated: dict[str, None] = {}
        late: dict[str, None] = {}  # new alerts recorded late (paged to nobody)
        unroutable: dict[str, None] = {}  # new alerts no configured channel can route
        inserted = duplicate = enqueued = 0
        with self._transaction() as conn:
            if fence is not None:
                fence(conn)
            # PostgreSQL: every alert and incident this batch may change, locked first and
            # in one order for every instance, so two instances recording overlapping
            # batches (a replay after a rebalance, one client failing on terminals of two
            # partitions, one outage seen by both) wait for each other instead of
            # deadlocking. The batch itself keeps its order (first come, first capped).
            conn.lock_keys([f"alert:{alert_id}" for alert_id, *_ in batch]
                           + [f"incident:{c.scope}:{c.scope_key}" for c in incidents])
            stored_ids = apply_incident_changes(conn, incidents, stamp)
            for alert_id, failure, event, start in batch:
                action = scrubbed(failure.suggested_action)
                occurred = utc_text(event.occurred_at)
                row = conn.execute(_INSERT_EVENT, _event_row(event, alert_id, failure, action))
                if row.rowcount == 0:
                    duplicate += 1
                    continue
                inserted += 1
                if recovery_window_seconds:
                    watch_failure(conn, alert_id, failure, recovery_window_seconds)
                incident_id = stored_ids.get(failure.incident_id or "", failure.incident_id)
                if incident_rules is None:
                    incident_id = None
                stale = _age_if_stale(event.occurred_at, moment, stale_after_seconds)
                if _insert_alert(conn, failure, alert_id, start, window_seconds, action, stamp,
                                      late=stale is not None):
                    new[alert_id] = None
                    write_history(conn, alert_id, "opened", None, "open", SYSTEM_ACTOR,
                                   "pipeline", None, stamp)
                    if stale is not None:  # recorded for the record, paged to nobody
                        late[alert_id] = None
                        enqueued += enqueue_sinks(conn, alert_id, routes, stamp, record_only=True)
                        note_on_opened(conn, alert_id, _late_note(stale, stale_after_seconds))
                        continue
                    enqueued += route_new_alert(conn, alert_id, failure, event, incident_id, routes,
                                                stamp, unroutable)
                    continue
                if stale is None and stale_after_seconds is not None and conn.execute(
                        "UPDATE alerts SET late = 0 WHERE alert_id = ? AND late = 1", (alert_id,)).rowcount:
                    # A fresh failure joins an alert that was late: it is news now.
                    late.pop(alert_id, None)
                    note_on_opened(conn, alert_id, f"no longer late: a fresh failure joined it at {stamp}")
                    enqueued += route_new_alert(conn, alert_id, failure, event, incident_id, routes,
                                                stamp, unroutable)
                elif incident_id is not None and stale is None:
                    enqueued += link_to_incident(conn, incident_id, alert_id, failure,
                                                       routes, stamp)
                # Relative to the row as it is now (another instance may have just
                # changed it): the count grows by one, the rest keeps the extremes.
                # The action is the most severe event's, the earliest of those on a tie
                # (by event time, then ID), so it does not depend on arrival order.
                rank = _RANK[failure.severity]
                conn.execute(
                    """UPDATE alerts SET
                        event_count = event_count + 1,
                        severity = CASE WHEN ? > severity_rank THEN ? ELSE severity END,
                        suggested_action = CASE WHEN ? > severity_rank THEN ?
                            WHEN ? < severity_rank THEN suggested_action
                            ELSE (SELECT e.suggested_action FROM alert_events e
                                  WHERE e.alert_id = alerts.alert_id AND e.severity = alerts.severity
                                  ORDER BY e.occurred_at, e.event_id LIMIT 1) END,
                        severity_rank = CASE WHEN ? > severity_rank THEN ? ELSE severity_rank END,
                        first_event_at = CASE WHEN ? < first_event_at THEN ? ELSE first_event_at END,
                        last_event_at = CASE WHEN ? > last_event_at THEN ? ELSE last_event_at END,
                        updated_at = ?
                    WHERE alert_id = ?""",
                    (rank, failure.severity, rank, action, rank, rank, rank, occurred, occurred,
                     occurred, occurred, stamp, alert_id),
                )
                if alert_id not in new:
                    updated[alert_id] = None
            if incident_rules is not None:  # the detector's attributions, in its order
                for change in incidents:
                    if change.event_ids:
                        enqueued += link_events(
                            conn, stored_ids.get(change.incident_id, change.incident_id),
                            change.event_ids, routes, stamp)
            for change in incidents:
                if change.kind == "ended":
                    enqueued += enqueue_resolved_notices(
                        conn, stored_ids.get(change.incident_id, change.incident_id), routes, stamp)
        return RecordResult(
            new_alert_ids=tuple(new),
            updated_alert_ids=tuple(updated),
            events_inserted=inserted,
            events_duplicate=duplicate,
            deliveries_enqueued=enqueued,
            late_alert_ids=tuple(late),
            unroutable_alert_ids=tuple(unroutable),
        )


def _insert_alert(
    conn: Database,
    failure: VipFailure,
    alert_id: str,
    start: datetime,
    window_seconds: int,
    action: str,
    stamp: str,
    *,
    late: bool = False,
) -> bool:
    manager = failure.manager
    occurred = utc_text(failure.event.occurred_at)
    row = conn.execute(
        """INSERT INTO alerts (
            alert_id, customer_id, customer_name, tier, manager_id, manager_name,
            manager_email, manager_webhook_url, manager_timezone, severity, severity_rank,
            suggested_action, window_start, window_end, first_event_at, last_event_at,
            event_count, created_at, updated_at, late)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
        ON CONFLICT DO NOTHING""",
        (alert_id, failure.customer_id, scrubbed(failure.customer_name), failure.tier,
         manager.manager_id, scrubbed(manager.name), manager.email, manager.webhook_url,
         manager.timezone, failure.severity, _RANK[failure.severity], action, utc_text(start),
         utc_text(start + timedelta(seconds=window_seconds)), occurred, occurred, stamp, stamp,
         int(late)),
    )
    return row.rowcount == 1


def _event_row(event: AlertEvent, alert_id: str, failure: VipFailure, action: str) -> tuple[Any, ...]:
    return (
        event.event_id, alert_id, utc_text(event.occurred_at), event.channel, event.terminal_id,
        event.merchant_id, event.txn_type, event.amount_minor, event.currency,
        event.response_code, event.outcome, event.response_meaning, event.status,
        event.card_ref, event.pan_masked, event.entry_mode, event.latency_ms, event.city,
        event.region, event.branch_id, event.merchant_name, failure.severity, action,
    )


def _age_if_stale(occurred_at: datetime, now: datetime, stale_after: float | None) -> float | None:
    """The event's age in seconds at ``now`` when it is older than ``stale_after``, else ``None``."""
    if stale_after is None:
        return None
    age = (now - occurred_at).total_seconds()
    return age if age > stale_after else None


def _late_note(age: float, stale_after: float | None) -> str:
    return (f"late: the failure happened {_duration(age)} before cardmon processed it "
            f"(alerting.stale_after_seconds {stale_after:g}); recorded, nobody paged")


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    return " ".join(part for part in parts if part)
