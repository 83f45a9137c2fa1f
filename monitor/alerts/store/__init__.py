"""The durable alert store and its delivery outbox (SQLite, or PostgreSQL for several instances).

What it guarantees, step by step, for one call of :meth:`AlertStore.record`:

1. open one write transaction (``BEGIN IMMEDIATE`` on SQLite);
2. insert each event keyed by ``event_id`` (``ON CONFLICT DO NOTHING``), alert by
   alert in ``(alert_id, event_id)`` order; an ``event_id`` already stored (a replay
   after a rebalance or a restart, by this instance or another) is ignored and
   counted as a duplicate;
3. add the event to its alert — the failures of one client in one tumbling
   event-time window aligned to the epoch — creating the alert if it is new;
4. for each new alert, enqueue one outbox row per channel (``email``, ``webhook``,
   global sinks), unique on ``(alert_id, channel)``;
5. commit (WAL, ``synchronous=FULL``) and only then return, so the caller may
   commit the Kafka offsets of these events.

The alert ID is derived from its content (:func:`alert_id_for`), so processing the
same events again, in any order, on any partition assignment, never creates a
second alert nor a second delivery. Messages are rendered when they are sent, so
events added before then are in the message.

The store holds one connection guarded by a lock; every method is short and
synchronous — from asyncio call it through :func:`asyncio.to_thread`. Its methods
live in this module (recording, reading) and in private mixins, one concern each:
the outbox (:mod:`monitor.alerts.store.outbox`), lifecycle and escalation
(:mod:`monitor.alerts.store.lifecycle`),
daily digests (:mod:`monitor.alerts.store.digests`), storm control and the rate cap
(:mod:`monitor.alerts.store.storm`); the row helpers they share are in
:mod:`monitor.alerts.store.rows`.

Several instances may share one PostgreSQL store (``docs/alert-store.md``): each
race is settled in the database — unique keys with ``ON CONFLICT DO NOTHING`` for
events, alerts, outbox rows and digests; ``FOR NO KEY UPDATE SKIP LOCKED`` when
claiming outbox rows; a row lock, then a check of the state read, for every
transition (sent, failed, acknowledged, resolved, escalated). The SQL is written
once for both databases (:mod:`monitor.alerts.store.db` says how).
No raw PAN is stored: ``card_ref``/``pan_masked`` that look like a PAN are masked
and free text is PAN-scrubbed before it is written.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Self

from monitor.alerts.preferences import covering_manager, delivery_time, manager_zone
from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.routing import (
    channel_kind,
    channels_for,
    default_channels,
)
from monitor.alerts.states import SYSTEM_ACTOR
from monitor.alerts.store.db import (
    Database,
    Row,
    SqliteDatabase,
    connect,
    is_url,
    redact_url,
)
from monitor.alerts.store.digests import DigestQueries, DigestRecord, digest_id_for, is_digest_id
from monitor.alerts.store.lifecycle import (
    AlertPage,
    EscalationCandidate,
    LifecycleQueries,
    LifecycleRecord,
)
from monitor.alerts.store.outbox import OutboxQueries, Resend
from monitor.alerts.store.rows import (
    _alert,
    _clean_text,
    _delivery,
    _dt,
    _note,
    _retried,
    _Routes,
    _ts,
    _write_history,
)
from monitor.alerts.store.schema import migrate
from monitor.alerts.store.schema_pg import migrate_pg, pg_schema_version
from monitor.alerts.store.storm import (
    StormCounts,
    StormQueries,
    _apply_incident_changes,
    _at_cap,
)
from monitor.config import PostgresSettings
from monitor.domain import SEVERITIES, Alert, AlertEvent, Delivery, Manager, VipFailure
from monitor.incidents.model import IncidentChange
from monitor.incidents.rules import IncidentRules
from monitor.privacy import is_pan, mask_pan

__all__ = [
    "AlertPage",
    "AlertStore",
    "DigestRecord",
    "EscalationCandidate",
    "LifecycleRecord",
    "RecordResult",
    "Resend",
    "StormCounts",
    "alert_id_for",
    "digest_id_for",
    "is_digest_id",
    "window_start_for",
]

#: The issue's grouping window: 10 minutes of event time.
DEFAULT_WINDOW_SECONDS: Final = 600
_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}

_EVENT_COLUMNS: Final = (
    "event_id", "alert_id", "occurred_at", "channel", "terminal_id", "merchant_id", "txn_type",
    "amount_minor", "currency", "response_code", "outcome", "response_meaning", "status",
    "card_ref", "pan_masked", "entry_mode", "latency_ms", "city", "region", "branch_id",
    "merchant_name", "severity", "suggested_action",
)
_INSERT_EVENT: Final = (
    f"INSERT INTO alert_events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))}) ON CONFLICT DO NOTHING"
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


def alert_id_for(customer_id: str, window_start: datetime) -> str:
    """Return the content-derived alert ID: ``"al-"`` + 20 base32 characters of SHA-256.

    Base32 (``a-z2-7``), not hex: an ID must never hold a 13–19 digit run that the
    PAN scrubbers of the sinks would take for a card number and mask.
    """
    key = f"{customer_id}|{window_start.astimezone(UTC).isoformat()}"
    digest = hashlib.sha256(key.encode()).digest()
    return "al-" + base64.b32encode(digest).decode("ascii")[:20].lower()


def _clean_card(value: str | None) -> str | None:
    if value is not None and is_pan(value):
        return mask_pan(value)
    return value


def _safe_event(event: AlertEvent) -> AlertEvent:
    """Mask a PAN that slipped into card fields, scrub free text (defence in depth)."""
    return replace(
        event,
        card_ref=_clean_card(event.card_ref),
        pan_masked=_clean_card(event.pan_masked),
        response_meaning=_clean_text(event.response_meaning),
    )


class AlertStore(OutboxQueries, LifecycleQueries, DigestQueries, StormQueries):
    """Alerts, their events and the delivery outbox in a SQLite file or a PostgreSQL database.

    Args:
        location: a SQLite file (parent directories are created; ``":memory:"`` works
            for throwaway use), or a ``postgresql://user[:password]@host[:port]/db``
            URL — the database must exist; the schema is created or upgraded in it.
            The URL's password is never logged nor shown in ``repr``.

        postgres: timeouts and keepalives of a PostgreSQL connection
            (:class:`~monitor.config.PostgresSettings`; its defaults when ``None``).

    Errors of every method are transient or permanent by
    :func:`monitor.alerts.store.db.is_transient`: a transient one (the database down or
    unreachable, :class:`~monitor.alerts.store.db.StoreUnavailable`; a lock or statement
    timeout; a deadlock) is retried inside the store for a few seconds at most, then
    raised, and the caller rides out the rest of the outage with its own backoff.

    Raises:
        sqlite3.DatabaseError: not an SQLite file, or one from a newer cardmon.
        StoreUnavailable: PostgreSQL cannot be reached or refuses the login.
        psycopg.Error: the URL is malformed, or the database holds a schema from a
            newer cardmon.
    """

    def __init__(self, location: str | Path, *, postgres: PostgresSettings | None = None) -> None:
        self._location = redact_url(str(location)) if is_url(location) else str(location)
        self._lock = threading.Lock()  # guards self._conn; a connection is not thread-safe
        self._closing = False  # set by close(): no more retries, running statements end
        self._conn: Database = connect(location, postgres)
        try:
            with self._transaction() as conn:
                if isinstance(conn, SqliteDatabase):
                    migrate(conn.raw, self._location)
                else:
                    migrate_pg(conn, self._location)
        except BaseException:
            self._conn.close()
            raise

    @property
    def location(self) -> str:
        """The SQLite file, or the PostgreSQL URL with its password replaced by ``***``."""
        return self._location

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._conn.dialect

    @property
    def schema_version(self) -> int:
        """The store's schema version (SQLite ``PRAGMA user_version``, PostgreSQL ``cardmon_schema``)."""
        with self._lock:
            if self._conn.dialect == "postgresql":
                return pg_schema_version(self._conn)
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def __repr__(self) -> str:
        return f"AlertStore({self._location!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; committed data stays.

        Safe from any thread, and quick: a call still running in another thread (a
        lock wait, a silent server) is interrupted and raises
        :class:`~monitor.alerts.store.db.StoreUnavailable`; nothing is retried after this.
        """
        self._closing = True
        if not self._lock.acquire(blocking=False):
            self._conn.interrupt()
            self._lock.acquire()
        try:
            self._conn.close()
        finally:
            self._lock.release()

    @contextmanager
    def _transaction(self) -> Iterator[Database]:
        # SQLite: BEGIN IMMEDIATE (one writer at a time). PostgreSQL: READ COMMITTED,
        # each race settled by a unique key, a row lock or a conditional update.
        with self._conn.transaction() as conn:
            yield conn

    # -- writing ---------------------------------------------------------------------

    @_retried
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
    ) -> RecordResult:
        """Store failures as alerts and enqueue deliveries, in one committed transaction.

        With storm control (``incident_rules``), the batch's incident changes are
        applied first; a failure that carries an ``incident_id`` links its alert to
        that incident, and so does each event a change attributes to its incident
        (``IncidentChange.event_ids``, in the changes' order, after the failures are
        stored); its manager gets one incident notice (``ic-...``) instead of
        a message per alert (:meth:`_link_to_incident`). An alert belongs to the first
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

        Returns:
            A :class:`RecordResult`; it is returned only after the commit.

        Raises:
            ValueError: an event time is naive.
            sqlite3.Error, psycopg.Error: the database could not be written (nothing
                was committed).
        """
        if not failures and not incidents:
            return RecordResult()
        moment = now or datetime.now(UTC)
        stamp = _ts(moment)
        enabled = ("email", "webhook") if channels is None else tuple(channels)
        routes = _Routes(enabled=enabled, sinks=tuple(sinks), managers=managers,
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
        with self._lock, self._transaction() as conn:
            # PostgreSQL: every alert and incident this batch may change, locked first and
            # in one order for every instance, so two instances recording overlapping
            # batches (a replay after a rebalance, one client failing on terminals of two
            # partitions, one outage seen by both) wait for each other instead of
            # deadlocking. The batch itself keeps its order (first come, first capped).
            conn.lock_keys([f"alert:{alert_id}" for alert_id, *_ in batch]
                           + [f"incident:{c.scope}:{c.scope_key}" for c in incidents])
            stored_ids = _apply_incident_changes(conn, incidents, stamp)
            for alert_id, failure, event, start in batch:
                action = _clean_text(failure.suggested_action)
                occurred = _ts(event.occurred_at)
                row = conn.execute(_INSERT_EVENT, _event_row(event, alert_id, failure, action))
                if row.rowcount == 0:
                    duplicate += 1
                    continue
                inserted += 1
                incident_id = stored_ids.get(failure.incident_id or "", failure.incident_id)
                if incident_rules is None:
                    incident_id = None
                stale = _age_if_stale(event.occurred_at, moment, stale_after_seconds)
                if self._insert_alert(conn, failure, alert_id, start, window_seconds, action, stamp,
                                      late=stale is not None):
                    new[alert_id] = None
                    _write_history(conn, alert_id, "opened", None, "open", SYSTEM_ACTOR,
                                   "pipeline", None, stamp)
                    if stale is not None:  # recorded for the record, paged to nobody
                        late[alert_id] = None
                        enqueued += self._enqueue_sinks(conn, alert_id, routes, stamp, record_only=True)
                        _note_opened(conn, alert_id, _late_note(stale, stale_after_seconds))
                        continue
                    enqueued += self._route_new(conn, alert_id, failure, event, incident_id, routes,
                                                stamp, unroutable)
                    continue
                if stale is None and stale_after_seconds is not None and conn.execute(
                        "UPDATE alerts SET late = 0 WHERE alert_id = ? AND late = 1", (alert_id,)).rowcount:
                    # A fresh failure joins an alert that was late: it is news now.
                    late.pop(alert_id, None)
                    _note_opened(conn, alert_id, f"no longer late: a fresh failure joined it at {stamp}")
                    enqueued += self._route_new(conn, alert_id, failure, event, incident_id, routes,
                                                stamp, unroutable)
                elif incident_id is not None and stale is None:
                    enqueued += self._link_to_incident(conn, incident_id, alert_id, failure,
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
                        enqueued += self._link_events(
                            conn, stored_ids.get(change.incident_id, change.incident_id),
                            change.event_ids, routes, stamp)
            for change in incidents:
                if change.kind == "ended":
                    enqueued += self._enqueue_resolved_notices(
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

    def _route_new(
        self, conn: Database, alert_id: str, failure: VipFailure, event: AlertEvent,
        incident_id: str | None, routes: _Routes, stamp: str, unroutable: dict[str, None],
    ) -> int:
        # A new (or no longer late) alert: its own messages, or its incident's notice.
        rules = routes.incidents
        if incident_id is None:
            hold = (rules.group_wait_seconds if rules is not None
                    and event.outcome in rules.outcome_classes else 0.0)
            count, lost = self._enqueue(conn, alert_id, failure.manager, routes, stamp,
                                        hold_seconds=hold)
        else:
            count = self._enqueue_sinks(conn, alert_id, routes, stamp)
            count += self._link_to_incident(conn, incident_id, alert_id, failure, routes, stamp)
            manager = (routes.managers or {}).get(failure.manager.manager_id, failure.manager)
            lost = _unroutable_note(manager, failure.severity, routes.enabled)
            if lost:
                _note_opened(conn, alert_id, lost)
        if lost:
            conn.execute("UPDATE alerts SET unroutable = 1 WHERE alert_id = ?", (alert_id,))
            unroutable[alert_id] = None
        return count

    @staticmethod
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
        occurred = _ts(failure.event.occurred_at)
        row = conn.execute(
            """INSERT INTO alerts (
                alert_id, customer_id, customer_name, tier, manager_id, manager_name,
                manager_email, manager_webhook_url, manager_timezone, severity, severity_rank,
                suggested_action, window_start, window_end, first_event_at, last_event_at,
                event_count, created_at, updated_at, late)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
            ON CONFLICT DO NOTHING""",
            (alert_id, failure.customer_id, _clean_text(failure.customer_name), failure.tier,
             manager.manager_id, manager.name, manager.email, manager.webhook_url,
             manager.timezone, failure.severity, _RANK[failure.severity], action, _ts(start),
             _ts(start + timedelta(seconds=window_seconds)), occurred, occurred, stamp, stamp,
             int(late)),
        )
        return row.rowcount == 1

    @staticmethod
    def _enqueue(
        conn: Database, alert_id: str, manager: Manager, routes: _Routes, stamp: str,
        *, hold_seconds: float = 0.0,
    ) -> tuple[int, str | None]:
        # Returns (outbox rows added, why no channel reaches the recipient or None).
        # Who receives it: the manager, or the first backup who is in when they are away
        # (preferences.py); when: now, or the start of their next window for a low or
        # medium alert in quiet or off hours; through what: their per-severity channels
        # (routing.py; a route key names a target, never its URL). Sinks are not people:
        # they get every alert at once. The alert's "opened" history row says what was done.
        severity = conn.execute(
            "SELECT severity FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()[0]
        now = _dt(stamp)
        coverage = covering_manager(manager, routes.managers or {}, now)
        recipient = coverage.manager
        due = max(delivery_time(recipient, severity, now), now + timedelta(seconds=hold_seconds))
        other = recipient.manager_id != manager.manager_id
        rows = [(route.channel, _ts(due), recipient if other else None)
                for route in channels_for(recipient, severity, routes.enabled)]
        lost = None if rows else _unroutable_note(recipient, severity, routes.enabled)
        capped = rows and _at_cap(conn, alert_id, manager.manager_id, routes, now)
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
                 *((to.manager_id, _clean_text(to.name), to.email, to.webhook_url, to.timezone)
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
            _note_opened(conn, alert_id, _note("; ".join(notes)) or "")
        return count, lost

    # -- reading ---------------------------------------------------------------------

    def get_alert(self, alert_id: str) -> Alert | None:
        """Return one alert with its deliveries, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                return None
            deliveries = self._conn.execute(
                "SELECT * FROM deliveries WHERE alert_id = ? ORDER BY delivery_id", (alert_id,)
            ).fetchall()
        return _alert(row, tuple(_delivery(d) for d in deliveries))

    def list_alerts(self) -> list[Alert]:
        """Return every alert with its deliveries, oldest window first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alerts ORDER BY window_start, alert_id"
            ).fetchall()
            deliveries = self._conn.execute(
                "SELECT * FROM deliveries ORDER BY delivery_id"
            ).fetchall()
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for delivery_row in deliveries:
            by_alert.setdefault(delivery_row["alert_id"], []).append(_delivery(delivery_row))
        return [_alert(row, tuple(by_alert.get(row["alert_id"], ()))) for row in rows]

    def alert_events(self, alert_id: str) -> list[AlertEvent]:
        """Return an alert's events, oldest first (empty for an unknown alert)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alert_events WHERE alert_id = ? ORDER BY occurred_at, event_id",
                (alert_id,),
            ).fetchall()
        return [_event(row) for row in rows]


def _event_row(event: AlertEvent, alert_id: str, failure: VipFailure, action: str) -> tuple[Any, ...]:
    return (
        event.event_id, alert_id, _ts(event.occurred_at), event.channel, event.terminal_id,
        event.merchant_id, event.txn_type, event.amount_minor, event.currency,
        event.response_code, event.outcome, event.response_meaning, event.status,
        event.card_ref, event.pan_masked, event.entry_mode, event.latency_ms, event.city,
        event.region, event.branch_id, event.merchant_name, failure.severity, action,
    )


def _event(row: Row) -> AlertEvent:
    fields = {name: row[name] for name in _EVENT_COLUMNS[3:-2]}
    return AlertEvent(event_id=row["event_id"], occurred_at=_dt(row["occurred_at"]), **fields)


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


def _unroutable_note(manager: Manager, severity: str, enabled: Sequence[str]) -> str | None:
    """Why no configured channel reaches ``manager`` at ``severity``; ``None`` when one does or they muted it."""
    wanted = manager.channels.get(severity)  # type: ignore[call-overload]
    if wanted == () or channels_for(manager, severity, enabled):  # type: ignore[arg-type]
        return None
    kinds = sorted({channel_kind(key) for key in (wanted or default_channels(manager))})
    has = f"their channels: {', '.join(kinds)}" if kinds else "no e-mail address, webhook or Apprise URL"
    return (f"unroutable: no configured channel reaches {manager.manager_id} at {severity} "
            f"({has}; configured: {', '.join(enabled) or 'none'})")


def _note_opened(conn: Database, alert_id: str, note: str) -> None:
    # Appends to the note of the alert's latest 'opened' history row.
    conn.execute(
        """UPDATE alert_history SET note = substr(CASE WHEN note IS NULL THEN ? ELSE note || '; ' || ? END,
                                                   1, 2000)
        WHERE history_id = (SELECT max(history_id) FROM alert_history
                            WHERE alert_id = ? AND action = 'opened')""",
        (note, note, alert_id))
