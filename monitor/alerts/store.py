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
synchronous — from asyncio call it through :func:`asyncio.to_thread`.

Several instances may share one PostgreSQL store (``docs/alert-store.md``): each
race is settled in the database — unique keys with ``ON CONFLICT DO NOTHING`` for
events, alerts, outbox rows and digests; ``FOR NO KEY UPDATE SKIP LOCKED`` when
claiming outbox rows; a row lock, then a check of the state read, for every
transition (sent, failed, acknowledged, resolved, escalated). The SQL is written
once for both databases (:mod:`monitor.alerts._db` says how).
No raw PAN is stored: ``card_ref``/``pan_masked`` that look like a PAN are masked
and free text is PAN-scrubbed before it is written.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, ParamSpec, Self, TypeVar

from monitor.alerts._db import (
    TRANSIENT_ERRORS,
    Database,
    Row,
    SqliteDatabase,
    connect,
    is_url,
    redact_url,
)
from monitor.alerts.lifecycle import (
    ALERT_STATES,
    SYSTEM_ACTOR,
    AlertNotFoundError,
    AlertState,
    HistoryAction,
    HistoryEntry,
    StateConflictError,
    Transition,
)
from monitor.alerts.model import (
    SEVERITIES,
    Alert,
    AlertEvent,
    AlertStatus,
    Delivery,
    Manager,
    VipFailure,
)
from monitor.alerts.preferences import covering_manager, delivery_time, manager_zone
from monitor.alerts.ratelimit import RateLimit, Summary, summary_id_for
from monitor.alerts.routing import channels_for
from monitor.alerts.schema import migrate
from monitor.alerts.schema_pg import migrate_pg, pg_schema_version
from monitor.decoder import is_pan, mask_pan, scrub_pans
from monitor.incidents.model import Incident, IncidentChange, NoticeKind, notice_id_for
from monitor.incidents.rules import IncidentRules

__all__ = [
    "AlertPage",
    "AlertStore",
    "DigestRecord",
    "EscalationCandidate",
    "LifecycleRecord",
    "RecordResult",
    "StormCounts",
    "alert_id_for",
    "digest_id_for",
    "is_digest_id",
    "window_start_for",
]

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

#: The issue's grouping window: 10 minutes of event time.
DEFAULT_WINDOW_SECONDS: Final = 600
# Longer than any send (the worker bounds a send to well under this), so a row claimed
# by a worker that crashed mid-send becomes due again after the lease.
_DEFAULT_LEASE_SECONDS: Final = 120.0
# A deadlock aborts one of two transactions: running it again twice more is plenty.
_TRANSACTION_ATTEMPTS: Final = 3
# Bounded so a huge exception text cannot bloat the outbox.
_MAX_ERROR_CHARS: Final = 2000
_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}
# Bounds on what people type into the history (an API caller must not bloat the store).
_MAX_ACTOR_CHARS: Final = 200
_MAX_NOTE_CHARS: Final = 2000
_MAX_PAGE: Final = 500
_VIA: Final = re.compile(r"[a-z][a-z0-9_.:-]{0,31}")

_EVENT_COLUMNS: Final = (
    "event_id", "alert_id", "occurred_at", "channel", "terminal_id", "merchant_id", "txn_type",
    "amount_minor", "currency", "response_code", "outcome", "response_meaning", "status",
    "card_ref", "pan_masked", "entry_mode", "latency_ms", "city", "region", "branch_id",
    "severity", "suggested_action",
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
    """

    new_alert_ids: tuple[str, ...] = ()
    updated_alert_ids: tuple[str, ...] = ()
    events_inserted: int = 0
    events_duplicate: int = 0
    deliveries_enqueued: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPage:
    """One page of :meth:`AlertStore.find_alerts`.

    Attributes:
        alerts: the alerts, newest first, with their deliveries.
        states: ``alert_id`` → lifecycle state, for each alert of the page.
        next_cursor: pass it as ``cursor`` for the next page; ``None`` on the last one.
    """

    alerts: tuple[Alert, ...]
    states: dict[str, AlertState]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationCandidate:
    """An alert that may have an escalation step due (see :meth:`AlertStore.escalation_candidates`).

    Attributes:
        alert_id: the alert.
        manager_id: the client's own relationship manager.
        created_at: when the alert was recorded (UTC); step delays count from here.
        escalation_step: steps already taken.
    """

    alert_id: str
    manager_id: str
    created_at: datetime
    escalation_step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleRecord:
    """An acknowledgement, escalation step or resolution, with what metrics need of its alert.

    Attributes:
        history_id: the history row (increasing in commit order).
        action: ``acknowledged``, ``escalated`` or ``resolved``.
        via: the channel it came through (``api``, ``link``, ``cli``, ``escalation``...).
        severity: the alert's severity now (``low``, ``medium``, ``high``).
        at: when it happened (UTC).
        opened_at: when the alert was recorded (UTC).
        step: for ``escalated``, which step of the alert's chain it was (1 = the
            first); 0 otherwise.
    """

    history_id: int
    action: HistoryAction
    via: str
    severity: str
    at: datetime
    opened_at: datetime
    step: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRecord:
    """A claimed daily digest (see :meth:`AlertStore.claim_digest`).

    Attributes:
        digest_id: ``dg-`` + 20 base32 characters, derived from manager and local date.
        manager_id: whose digest it is.
        local_date: the manager's local day it belongs to.
        timezone: the manager's IANA zone when it was claimed.
        period_start: alerts recorded at or after this instant are in it (UTC).
        period_end: ... and before this one (UTC): the claim time.
        alert_count: alerts of the manager's clients recorded in the period.
        created_at: when it was claimed (UTC).
    """

    digest_id: str
    manager_id: str
    local_date: date
    timezone: str
    period_start: datetime
    period_end: datetime
    alert_count: int
    created_at: datetime


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


@dataclass(frozen=True, slots=True)
class _Routes:
    enabled: tuple[str, ...]  # manager channels that are configured
    sinks: tuple[str, ...]  # global sinks every new alert goes to
    managers: Mapping[str, Manager] | None = None  # <manager_id: registry entry>, for backups
    incidents: IncidentRules | None = None  # storm control (None: every alert on its own)
    rate_limit: RateLimit | None = None  # per-manager message cap (None: no cap)


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


def digest_id_for(manager_id: str, local_date: date) -> str:
    """Return the ID of a manager's digest of one local day: ``"dg-"`` + 20 base32 characters."""
    digest = hashlib.sha256(f"digest|{manager_id}|{local_date.isoformat()}".encode()).digest()
    return "dg-" + base64.b32encode(digest).decode("ascii")[:20].lower()


def is_digest_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names a digest rather than an alert."""
    return alert_id.startswith("dg-")


def _ts(value: datetime) -> str:
    # One fixed-width UTC format, so text comparison in SQL is time comparison.
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the alert store")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _clean_text(value: str) -> str:
    return scrub_pans(value.encode()).decode()


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


def _retried(method: Callable[P, R]) -> Callable[P, R]:
    """Run a write method again when PostgreSQL aborted its transaction to break a deadlock.

    Each write method is one transaction with no effect outside it, so running it again
    is safe. Deadlocks need two instances locking the same rows in opposite orders:
    ``record`` orders its alert locks, but incident changes, summaries and notices
    touch rows in the order of their own data.
    """
    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, _TRANSACTION_ATTEMPTS + 1):
            try:
                return method(*args, **kwargs)
            except TRANSIENT_ERRORS as error:
                if attempt == _TRANSACTION_ATTEMPTS:
                    raise
                log.warning("alert store: %s aborted (%s), trying again (%d/%d)",
                            method.__name__, type(error).__name__, attempt + 1,
                            _TRANSACTION_ATTEMPTS)
        raise AssertionError("unreachable")
    return run


class AlertStore:
    """Alerts, their events and the delivery outbox in a SQLite file or a PostgreSQL database.

    Args:
        location: a SQLite file (parent directories are created; ``":memory:"`` works
            for throwaway use), or a ``postgresql://user[:password]@host[:port]/db``
            URL — the database must exist; the schema is created or upgraded in it.
            The URL's password is never logged nor shown in ``repr``.

    Raises:
        sqlite3.DatabaseError: not an SQLite file, or one from a newer cardmon.
        psycopg.Error: PostgreSQL cannot be reached, refuses the login, or holds a
            schema from a newer cardmon.
    """

    def __init__(self, location: str | Path) -> None:
        self._location = redact_url(str(location)) if is_url(location) else str(location)
        self._lock = threading.Lock()  # guards self._conn; a connection is not thread-safe
        self._conn: Database = connect(location)
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
        """Close the connection; committed data stays."""
        with self._lock:
            self._conn.close()

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
    ) -> RecordResult:
        """Store failures as alerts and enqueue deliveries, in one committed transaction.

        With storm control (``incident_rules``), the batch's incident changes are
        applied first; a failure that carries an ``incident_id`` links its alert to
        that incident, and its manager gets one incident notice (``ic-...``) instead of
        a message per alert (:meth:`_link_to_incident`); a new alert of an outage
        class that no incident holds yet waits ``group_wait_seconds`` before going out
        on its own, so that an incident opening meanwhile can take it in. An ended
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

        Returns:
            A :class:`RecordResult`; it is returned only after the commit.

        Raises:
            ValueError: an event time is naive.
            sqlite3.Error, psycopg.Error: the database could not be written (nothing
                was committed).
        """
        if not failures and not incidents:
            return RecordResult()
        stamp = _ts(now or datetime.now(UTC))
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
            for change in incidents:
                if change.kind == "opened" and incident_rules is not None:
                    enqueued += self._link_earlier_alerts(conn, stored_ids[change.incident_id],
                                                          routes, stamp)
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
                if self._insert_alert(conn, failure, alert_id, start, window_seconds, action, stamp):
                    new[alert_id] = None
                    _write_history(conn, alert_id, "opened", None, "open", SYSTEM_ACTOR,
                                   "pipeline", None, stamp)
                    hold = (incident_rules.group_wait_seconds
                            if incident_rules is not None and incident_id is None
                            and event.outcome in incident_rules.outcome_classes else 0.0)
                    if incident_id is None:
                        enqueued += self._enqueue(conn, alert_id, failure.manager, routes, stamp,
                                                  hold_seconds=hold)
                    else:
                        enqueued += self._enqueue_sinks(conn, alert_id, routes, stamp)
                        enqueued += self._link_to_incident(conn, incident_id, alert_id, failure,
                                                           routes, stamp)
                    continue
                if incident_id is not None:
                    enqueued += self._link_to_incident(conn, incident_id, alert_id, failure,
                                                       routes, stamp)
                # Relative to the row as it is now (another instance may have just
                # changed it): the count grows by one, the rest keeps the extremes.
                rank = _RANK[failure.severity]
                conn.execute(
                    """UPDATE alerts SET
                        event_count = event_count + 1,
                        severity = CASE WHEN ? > severity_rank THEN ? ELSE severity END,
                        suggested_action = CASE WHEN ? > severity_rank THEN ? ELSE suggested_action END,
                        severity_rank = CASE WHEN ? > severity_rank THEN ? ELSE severity_rank END,
                        first_event_at = CASE WHEN ? < first_event_at THEN ? ELSE first_event_at END,
                        last_event_at = CASE WHEN ? > last_event_at THEN ? ELSE last_event_at END,
                        updated_at = ?
                    WHERE alert_id = ?""",
                    (rank, failure.severity, rank, action, rank, rank, occurred, occurred,
                     occurred, occurred, stamp, alert_id),
                )
                if alert_id not in new:
                    updated[alert_id] = None
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
        )

    @staticmethod
    def _insert_alert(
        conn: Database,
        failure: VipFailure,
        alert_id: str,
        start: datetime,
        window_seconds: int,
        action: str,
        stamp: str,
    ) -> bool:
        manager = failure.manager
        occurred = _ts(failure.event.occurred_at)
        row = conn.execute(
            """INSERT INTO alerts (
                alert_id, customer_id, customer_name, tier, manager_id, manager_name,
                manager_email, manager_webhook_url, manager_timezone, severity, severity_rank,
                suggested_action, window_start, window_end, first_event_at, last_event_at,
                event_count, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
            ON CONFLICT DO NOTHING""",
            (alert_id, failure.customer_id, _clean_text(failure.customer_name), failure.tier,
             manager.manager_id, manager.name, manager.email, manager.webhook_url,
             manager.timezone, failure.severity, _RANK[failure.severity], action, _ts(start),
             _ts(start + timedelta(seconds=window_seconds)), occurred, occurred, stamp, stamp),
        )
        return row.rowcount == 1

    @staticmethod
    def _enqueue(
        conn: Database, alert_id: str, manager: Manager, routes: _Routes, stamp: str,
        *, hold_seconds: float = 0.0,
    ) -> int:
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
            conn.execute(
                """UPDATE alert_history SET note = ? WHERE history_id = (
                    SELECT max(history_id) FROM alert_history
                    WHERE alert_id = ? AND action = 'opened')""",
                (_note("; ".join(notes)), alert_id))
        return count

    # -- the outbox ------------------------------------------------------------------

    @_retried
    def claim_due(
        self, now: datetime, limit: int = 50, *, lease_seconds: float = _DEFAULT_LEASE_SECONDS
    ) -> list[Delivery]:
        """Return pending deliveries due at ``now`` and lease them to the caller.

        A claimed row's ``next_attempt_at`` moves to exactly ``now + lease_seconds``,
        so another pass does not send it concurrently; if the caller crashes before
        marking it, the row becomes due again when the lease ends. A caller whose sends
        may outlast the lease extends it with :meth:`renew_leases`.

        Args:
            now: timezone-aware current time.
            limit: most rows to return, oldest due first.
            lease_seconds: how long the claim holds, in seconds.

        Returns:
            The claimed rows as they were before the claim.
        """
        lease_end = _ts(now + timedelta(seconds=lease_seconds))
        with self._lock, self._transaction() as conn:
            # PostgreSQL: rows another instance is claiming right now are skipped, not
            # waited for; once it commits, their next_attempt_at is past ``now``.
            rows = conn.execute(
                f"""SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?
                ORDER BY next_attempt_at, delivery_id LIMIT ?{conn.for_update_skip_locked}""",
                (_ts(now), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ?",
                [(lease_end, row["delivery_id"]) for row in rows],
            )
        return [_delivery(row) for row in rows]

    def renew_leases(self, leases: Mapping[int, datetime], until: datetime) -> list[int]:
        """Extend the leases a worker still holds; a lease someone else changed is left alone.

        A row is renewed only while it is pending and its ``next_attempt_at`` is still
        the lease end the caller wrote (compare-and-set): a row already marked (sent,
        retried, failed) or claimed again by another worker after the lease ended
        keeps what it has.

        Args:
            leases: ``delivery_id`` → the lease end the caller holds (what
                :meth:`claim_due` or the previous renewal wrote).
            until: the new lease end (aware).

        Returns:
            The delivery IDs whose lease now ends at ``until``.
        """
        end = _ts(until)
        renewed: list[int] = []
        with self._lock, self._transaction() as conn:
            for delivery_id, held in leases.items():
                row = conn.execute(
                    """UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ?
                    AND status = 'pending' AND next_attempt_at = ?""",
                    (end, delivery_id, _ts(held)),
                )
                if row.rowcount == 1:
                    renewed.append(delivery_id)
        return renewed

    def mark_sent(self, delivery_id: int, at: datetime) -> bool:
        """Record that the channel accepted a pending delivery; ``False`` if not pending.

        The alert's history gets a ``notified`` row (who: the recipient, via: the
        channel); an ``open`` or ``failed`` alert becomes ``notified``.
        """
        return self._mark(
            "status = 'sent', attempts = attempts + 1, sent_at = ?, updated_at = ?",
            (_ts(at), _ts(at)), delivery_id, after=_after_sent,
        )

    def mark_retry(self, delivery_id: int, error: str, next_attempt_at: datetime) -> bool:
        """Record a failed attempt and when to try again; ``False`` if not pending."""
        return self._mark(
            "attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?",
            (_error_text(error), _ts(next_attempt_at), _ts(datetime.now(UTC))), delivery_id,
        )

    def mark_failed(self, delivery_id: int, error: str) -> bool:
        """Record the last failed attempt and give up; ``False`` if not pending.

        When every delivery of an ``open`` alert has failed, the alert becomes
        ``failed`` (a history row carries the last error).
        """
        return self._mark(
            "status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ?",
            (_error_text(error), _ts(datetime.now(UTC))), delivery_id, after=_after_failed,
        )

    @_retried
    def _mark(
        self,
        assignments: str,
        values: tuple[Any, ...],
        delivery_id: int,
        *,
        after: Callable[[Database, int], None] | None = None,
    ) -> bool:
        with self._lock, self._transaction() as conn:
            row = conn.execute(
                f"UPDATE deliveries SET {assignments} WHERE delivery_id = ? AND status = 'pending'",
                (*values, delivery_id),
            )
            if row.rowcount == 1 and after is not None:
                after(conn, delivery_id)
        return row.rowcount == 1

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

    def pending_count(self) -> int:
        """Deliveries still waiting in the outbox (first try or a retry)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()
        return int(row[0])

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

    # -- lifecycle: states, history, acknowledgement, escalation ---------------------

    def state_of(self, alert_id: str) -> AlertState | None:
        """Return an alert's lifecycle state, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return None if row is None else row["state"]

    def history(self, alert_id: str) -> list[HistoryEntry]:
        """Return an alert's history, oldest first (empty for an unknown alert)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM alert_history WHERE alert_id = ? ORDER BY history_id", (alert_id,)
            ).fetchall()
        return [_history_entry(row) for row in rows]

    def lifecycle_records(
        self, after_history_id: int, limit: int = 5_000
    ) -> tuple[list[LifecycleRecord], int]:
        """Acknowledgements, escalation steps and resolutions recorded after a history row.

        Whoever wrote them — this process's API, another instance, the CLI — so a
        reader that keeps the returned cursor sees each exactly once.

        Args:
            after_history_id: the cursor of the previous call; 0 for everything.
            limit: most records returned (>= 1).

        Returns:
            ``(records, cursor)``: records in history order, and the cursor for the next
            call (the last history row read; unchanged when nothing is new).
        """
        with self._lock:
            newest = self._conn.execute("SELECT max(history_id) FROM alert_history").fetchone()[0]
            if newest is None or newest <= after_history_id:
                return [], after_history_id
            rows = self._conn.execute(
                """SELECT h.history_id, h.action, h.via, h.at, a.severity, a.created_at,
                    CASE WHEN h.action = 'escalated' THEN (
                        SELECT count(*) FROM alert_history e WHERE e.alert_id = h.alert_id
                        AND e.action = 'escalated' AND e.history_id <= h.history_id)
                    ELSE 0 END AS step
                FROM alert_history h JOIN alerts a ON a.alert_id = h.alert_id
                WHERE h.history_id > ? AND h.history_id <= ?
                  AND h.action IN ('acknowledged', 'escalated', 'resolved')
                ORDER BY h.history_id LIMIT ?""",
                (after_history_id, newest, limit),
            ).fetchall()
        records = [LifecycleRecord(history_id=row["history_id"], action=row["action"],
                                   via=row["via"], severity=row["severity"], at=_dt(row["at"]),
                                   opened_at=_dt(row["created_at"]), step=row["step"])
                   for row in rows]
        cursor = records[-1].history_id if len(records) == limit else newest
        return records, cursor

    def state_counts(self) -> dict[tuple[AlertState, str], int]:
        """Alerts in the store by ``(lifecycle state, severity)``; absent pairs have none."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, severity, count(*) FROM alerts GROUP BY state, severity").fetchall()
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def acknowledge(
        self, alert_id: str, *, by: str, via: str, note: str | None = None,
        at: datetime | None = None,
    ) -> Transition:
        """Acknowledge an alert: someone owns it now, and its escalation chain stops.

        Idempotent: acknowledging an acknowledged (or resolved) alert changes nothing
        and returns ``changed=False``.

        Args:
            alert_id: the alert.
            by: who (manager ID or operator name; 1–200 characters, PAN-scrubbed).
            via: the channel it came through (``api``, ``link``, ``cli``...).
            note: optional free text (PAN-scrubbed, at most 2,000 characters kept).
            at: when (aware; UTC now if ``None``).

        Returns:
            The :class:`Transition`.

        Raises:
            AlertNotFoundError: no such alert.
            ValueError: ``by`` or ``via`` is empty or too long.
        """
        return self._transition(alert_id, "acknowledged", by=by, via=via, note=note, at=at,
                                allowed=("open", "notified", "failed"))

    def resolve(
        self, alert_id: str, *, by: str, via: str, note: str, at: datetime | None = None
    ) -> Transition:
        """Resolve an acknowledged alert with a note saying what was done.

        Idempotent: resolving a resolved alert changes nothing (``changed=False``).

        Args:
            alert_id: the alert.
            by: who (manager ID or operator name).
            via: the channel it came through.
            note: what was done (required, PAN-scrubbed).
            at: when (aware; UTC now if ``None``).

        Raises:
            AlertNotFoundError: no such alert.
            StateConflictError: the alert is not acknowledged yet (acknowledge it first).
            ValueError: ``by``, ``via`` or ``note`` is empty or too long.
        """
        if not note or not note.strip():
            raise ValueError("a resolution needs a note saying what was done")
        return self._transition(alert_id, "resolved", by=by, via=via, note=note, at=at,
                                allowed=("acknowledged",))

    @_retried
    def _transition(
        self, alert_id: str, target: AlertState, *, by: str, via: str, note: str | None,
        at: datetime | None, allowed: tuple[AlertState, ...],
    ) -> Transition:
        actor, channel, text = _actor(by), _via(via), _note(note)
        stamp = _ts(at or datetime.now(UTC))
        action: HistoryAction = "acknowledged" if target == "acknowledged" else "resolved"
        with self._lock, self._transaction() as conn:
            row = conn.execute(f"SELECT state FROM alerts WHERE alert_id = ?{conn.for_update}",
                               (alert_id,)).fetchone()
            if row is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            state: AlertState = row["state"]
            if state == target or (target == "acknowledged" and state == "resolved"):
                return Transition(alert_id=alert_id, state=state, changed=False)
            if state not in allowed:
                raise StateConflictError(
                    f"alert {alert_id} is {state}; acknowledge it before resolving it", state)
            conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (target, alert_id))
            entry = _write_history(conn, alert_id, action, state, target, actor, channel, text, stamp)
        return Transition(alert_id=alert_id, state=target, changed=True, entry=entry)

    def find_alerts(
        self,
        *,
        state: AlertState | None = None,
        manager_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlertPage:
        """Return one page of alerts, newest first, with their states and deliveries.

        Args:
            state: only alerts in this lifecycle state.
            manager_id: only alerts of this relationship manager (the client's own).
            since: only alerts recorded at or after this time (aware).
            limit: page size, 1–500.
            cursor: ``next_cursor`` of the previous page; ``None`` for the first page.

        Returns:
            An :class:`AlertPage`; ``next_cursor`` is ``None`` on the last page.

        Raises:
            ValueError: a bad ``limit``, ``cursor`` or ``state``, or a naive ``since``.
        """
        if not 1 <= limit <= _MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {_MAX_PAGE}")
        if state is not None and state not in ALERT_STATES:
            raise ValueError(f"state must be one of {', '.join(ALERT_STATES)}")
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if manager_id is not None:
            clauses.append("manager_id = ?")
            params.append(manager_id)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(_ts(since))
        if cursor is not None:
            clauses.append("(created_at, alert_id) < (?, ?)")
            params.extend(_decode_cursor(cursor))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT * FROM alerts {where} ORDER BY created_at DESC, alert_id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
            page = rows[:limit]
            ids = [row["alert_id"] for row in page]
            deliveries = self._conn.execute(
                f"SELECT * FROM deliveries WHERE alert_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY delivery_id", ids,
            ).fetchall() if ids else []
        by_alert: dict[str, list[Delivery]] = {}  # <alert_id: its deliveries>
        for delivery_row in deliveries:
            by_alert.setdefault(delivery_row["alert_id"], []).append(_delivery(delivery_row))
        alerts = tuple(_alert(row, tuple(by_alert.get(row["alert_id"], ()))) for row in page)
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = _encode_cursor(last["created_at"], last["alert_id"])
        return AlertPage(alerts=alerts, states={row["alert_id"]: row["state"] for row in page},
                         next_cursor=next_cursor)

    def escalation_candidates(
        self, severities: Sequence[str], now: datetime, first_after_seconds: int, step_count: int
    ) -> list[EscalationCandidate]:
        """Alerts that may have an escalation step due at ``now``, oldest first.

        Those of one of ``severities``, neither acknowledged nor resolved, with fewer
        than ``step_count`` steps taken and recorded at least ``first_after_seconds``
        before ``now``.
        """
        if not severities:
            return []
        cutoff = _ts(now - timedelta(seconds=first_after_seconds))
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT alert_id, manager_id, created_at, escalation_step FROM alerts
                WHERE state NOT IN ('acknowledged', 'resolved')
                  AND severity IN ({', '.join('?' * len(severities))})
                  AND escalation_step < ? AND created_at <= ?
                ORDER BY created_at, alert_id""",
                (*severities, step_count, cutoff),
            ).fetchall()
        return [EscalationCandidate(alert_id=row["alert_id"], manager_id=row["manager_id"],
                                    created_at=_dt(row["created_at"]),
                                    escalation_step=row["escalation_step"]) for row in rows]

    @_retried
    def escalate(
        self,
        alert_id: str,
        step_index: int,
        *,
        recipient: Manager | None,
        channels: Sequence[str] = ("email", "webhook"),
        note: str,
        at: datetime,
    ) -> int | None:
        """Take escalation step ``step_index`` (0-based) of an alert, once.

        In one transaction: check the alert is neither acknowledged nor resolved and
        has taken exactly ``step_index`` steps; count the step; write an
        ``escalated`` history row; enqueue the recipient's deliveries.

        Args:
            alert_id: the alert.
            step_index: the step to take (0-based).
            recipient: who to notify; ``None`` records the step without a delivery.
            channels: the manager channels that are configured.
            note: the history note (which step, to whom).
            at: the time of the step (aware).

        Returns:
            Outbox rows added, or ``None`` when the step was not taken (acknowledged,
            resolved, unknown alert, or the step is already taken).
        """
        stamp = _ts(at)
        with self._lock, self._transaction() as conn:
            row = conn.execute(
                "SELECT state, escalation_step, manager_id FROM alerts WHERE alert_id = ?"
                f"{conn.for_update}", (alert_id,),
            ).fetchone()
            if row is None or row["state"] in ("acknowledged", "resolved") \
                    or row["escalation_step"] != step_index:
                return None
            conn.execute("UPDATE alerts SET escalation_step = ? WHERE alert_id = ?",
                         (step_index + 1, alert_id))
            _write_history(conn, alert_id, "escalated", row["state"], row["state"], SYSTEM_ACTOR,
                           "escalation", _note(note), stamp)
            if recipient is None or recipient.manager_id == row["manager_id"]:
                return 0
            linked = conn.execute("SELECT incident_id FROM incident_alerts WHERE alert_id = ?",
                                  (alert_id,)).fetchone()
            if linked is not None:  # one escalation message per incident, manager and step
                return _enqueue_escalation_notice(conn, linked["incident_id"], row["manager_id"],
                                                  step_index, recipient, channels, stamp)
            return _enqueue_for(conn, alert_id, recipient, channels, stamp)

    @_retried
    def enqueue_for_manager(
        self,
        alert_id: str,
        manager: Manager,
        *,
        channels: Sequence[str] = ("email", "webhook"),
        at: datetime | None = None,
    ) -> int:
        """Enqueue deliveries of an alert to another manager than the alert's own.

        One row per channel the manager has (``email`` if an address, ``webhook`` if
        a URL) among ``channels``, unique on ``(alert_id, channel, recipient_id)``:
        calling it again never sends twice. The manager's contact details are kept
        on the row (a snapshot, as alerts keep their manager's).

        Returns:
            Outbox rows added (0 if they were already there).

        Raises:
            AlertNotFoundError: no such alert.
        """
        stamp = _ts(at or datetime.now(UTC))
        with self._lock, self._transaction() as conn:
            if conn.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone() is None:
                raise AlertNotFoundError(f"no alert {alert_id}")
            return _enqueue_for(conn, alert_id, manager, channels, stamp)

    def delivery_recipient(self, delivery_id: int) -> Manager | None:
        """The manager a delivery goes to when it is not the alert's own, else ``None``.

        ``None`` means: the alert's manager (``Alert.manager``), or a sink.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,)).fetchone()
        if row is None or not row["recipient_id"]:
            return None
        return Manager(manager_id=row["recipient_id"], name=row["recipient_name"] or "",
                       email=row["recipient_email"], webhook_url=row["recipient_webhook_url"],
                       timezone=row["recipient_timezone"] or "UTC")

    def delivery_recipients(self, alert_id: str) -> dict[int, str]:
        """``delivery_id`` → manager ID for an alert's deliveries to another manager."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT delivery_id, recipient_id FROM deliveries "
                "WHERE alert_id = ? AND recipient_id != ''", (alert_id,),
            ).fetchall()
        return {row["delivery_id"]: row["recipient_id"] for row in rows}


    # -- daily digests (monitor/alerts/digest.py) ------------------------------------

    @_retried
    def claim_digest(
        self,
        manager: Manager,
        local_date: date,
        *,
        at: datetime,
        channels: Sequence[str] = ("email", "webhook"),
        first_period_seconds: int = 86_400,
    ) -> DigestRecord | None:
        """Claim a manager's digest of one local day and enqueue it, exactly once.

        In one write transaction: insert the ``(manager_id, local_date)`` row (unique,
        ``ON CONFLICT DO NOTHING``: a second instance, or a second pass, gets ``None``;
        on PostgreSQL it waits for the first one's commit to know), fix its
        period — from the end of the manager's previous digest (or
        ``first_period_seconds`` before ``at`` for the first one) to ``at`` — and, when
        the period holds alerts, enqueue one outbox row for it: ``email`` if the
        manager has an address and e-mail is configured, else ``webhook``. The
        delivery worker sends it like an alert (retries, fallback, metrics).

        Args:
            manager: the manager (contact details are kept on the outbox row).
            local_date: the manager's local day the digest belongs to.
            at: the time of the claim (aware); the period ends here.
            channels: the manager channels that are configured.
            first_period_seconds: length of a manager's first period, in seconds.

        Returns:
            The claimed :class:`DigestRecord`, or ``None`` when it was already claimed.
        """
        stamp = _ts(at)
        digest_id = digest_id_for(manager.manager_id, local_date)
        with self._lock, self._transaction() as conn:
            previous = conn.execute(
                "SELECT max(period_end) FROM digests WHERE manager_id = ?", (manager.manager_id,)
            ).fetchone()[0]
            start = min(previous or _ts(at - timedelta(seconds=first_period_seconds)), stamp)
            count = conn.execute(
                "SELECT count(*) FROM alerts WHERE manager_id = ? AND created_at >= ? AND created_at < ?",
                (manager.manager_id, start, stamp),
            ).fetchone()[0]
            claimed = conn.execute(
                """INSERT INTO digests (digest_id, manager_id, local_date, timezone,
                    period_start, period_end, alert_count, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING""",
                (digest_id, manager.manager_id, local_date.isoformat(), manager.timezone, start,
                 stamp, count, stamp),
            ).rowcount
            if not claimed:
                return None
            channel = next((name for name, wanted in (("email", manager.email),
                                                      ("webhook", manager.webhook_url))
                            if wanted and name in channels), None)
            if count and channel is not None:
                conn.execute(
                    """INSERT INTO deliveries
                        (alert_id, channel, status, attempts, next_attempt_at, created_at,
                         updated_at, recipient_id, recipient_name, recipient_email,
                         recipient_webhook_url, recipient_timezone)
                    VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (digest_id, channel, stamp, stamp, stamp, manager.manager_id,
                     _clean_text(manager.name), manager.email, manager.webhook_url,
                     manager.timezone),
                )
        return DigestRecord(digest_id=digest_id, manager_id=manager.manager_id,
                            local_date=local_date, timezone=manager.timezone,
                            period_start=_dt(start), period_end=at.astimezone(UTC),
                            alert_count=count, created_at=at.astimezone(UTC))

    def digest(self, digest_id: str) -> DigestRecord | None:
        """Return a claimed digest, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM digests WHERE digest_id = ?", (digest_id,)).fetchone()
        if row is None:
            return None
        return DigestRecord(digest_id=row["digest_id"], manager_id=row["manager_id"],
                            local_date=date.fromisoformat(row["local_date"]),
                            timezone=row["timezone"], period_start=_dt(row["period_start"]),
                            period_end=_dt(row["period_end"]), alert_count=row["alert_count"],
                            created_at=_dt(row["created_at"]))

    def digests_of(self, manager_id: str) -> list[DigestRecord]:
        """Return a manager's claimed digests, oldest first."""
        with self._lock:
            ids = [row[0] for row in self._conn.execute(
                "SELECT digest_id FROM digests WHERE manager_id = ? ORDER BY period_end",
                (manager_id,)).fetchall()]
        return [record for record in map(self.digest, ids) if record is not None]

    def manager_alerts(
        self, manager_id: str, start: datetime, end: datetime
    ) -> list[tuple[Alert, AlertState]]:
        """Alerts of a manager's clients recorded in ``[start, end)``, oldest first, with their state.

        The alerts carry no deliveries (``status`` reads ``unrouted``); the state is
        the lifecycle state now.
        """
        with self._lock:
            rows = self._conn.execute(
                """SELECT * FROM alerts WHERE manager_id = ? AND created_at >= ? AND created_at < ?
                ORDER BY created_at, alert_id""",
                (manager_id, _ts(start), _ts(end)),
            ).fetchall()
        return [(_alert(row, ()), row["state"]) for row in rows]


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
    def _enqueue_sinks(conn: Database, alert_id: str, routes: _Routes, stamp: str) -> int:
        # Sinks are not people: an alert inside an incident still goes to each of them.
        return sum(conn.execute(
            """INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at,
                created_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (alert_id, sink, stamp, stamp, stamp)).rowcount for sink in routes.sinks)

    def _link_to_incident(
        self, conn: Database, incident_id: str, alert_id: str, failure: VipFailure,
        routes: _Routes, stamp: str,
    ) -> int:
        return self._link(conn, incident_id, alert_id, failure.manager, failure.severity, routes, stamp)

    def _link_earlier_alerts(
        self, conn: Database, incident_id: str, routes: _Routes, stamp: str
    ) -> int:
        # An incident opens after its first failures: alerts recorded before it that
        # lie inside it (same scope key, outage class, from a window before its start)
        # join it now — their held messages are folded as long as they were not tried.
        row = conn.execute("SELECT scope, scope_key, started_at FROM incidents WHERE incident_id = ?",
                           (incident_id,)).fetchone()
        rules = routes.incidents
        if row is None or rules is None:
            return 0
        scope, key = row["scope"], row["scope_key"]
        since = _ts(_dt(row["started_at"]) - timedelta(seconds=rules.window_seconds))
        where = {"terminal": "e.terminal_id = ?", "merchant": "e.merchant_id = ?",
                 "region": "e.region = ?", "issuer": "substr(e.pan_masked, 1, 6) = ?",
                 "network": "? = 'fleet'"}[scope]
        classes = rules.outcome_classes
        rows = conn.execute(
            f"""SELECT DISTINCT a.alert_id, a.manager_id, a.severity FROM alert_events e
            JOIN alerts a ON a.alert_id = e.alert_id
            WHERE e.occurred_at >= ? AND {where}
              AND e.outcome IN ({', '.join('?' * len(classes))})
              AND NOT EXISTS (SELECT 1 FROM incident_alerts l WHERE l.alert_id = a.alert_id)
            ORDER BY a.alert_id""",
            (since, key, *classes)).fetchall()
        count = 0
        for alert in rows:
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


def _event_row(event: AlertEvent, alert_id: str, failure: VipFailure, action: str) -> tuple[Any, ...]:
    return (
        event.event_id, alert_id, _ts(event.occurred_at), event.channel, event.terminal_id,
        event.merchant_id, event.txn_type, event.amount_minor, event.currency,
        event.response_code, event.outcome, event.response_meaning, event.status,
        event.card_ref, event.pan_masked, event.entry_mode, event.latency_ms, event.city,
        event.region, event.branch_id, failure.severity, action,
    )


def _error_text(error: str) -> str:
    return _clean_text(error)[:_MAX_ERROR_CHARS]


def _event(row: Row) -> AlertEvent:
    fields = {name: row[name] for name in _EVENT_COLUMNS[3:-2]}
    return AlertEvent(event_id=row["event_id"], occurred_at=_dt(row["occurred_at"]), **fields)


def _delivery(row: Row) -> Delivery:
    return Delivery(
        delivery_id=row["delivery_id"],
        alert_id=row["alert_id"],
        channel=row["channel"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=_dt(row["created_at"]),
        sent_at=_dt(row["sent_at"]) if row["sent_at"] else None,
    )


def _status(deliveries: Sequence[Delivery]) -> AlertStatus:
    if not deliveries:
        return "unrouted"
    if any(d.status == "sent" for d in deliveries):
        return "notified"
    if all(d.status == "merged" for d in deliveries):
        return "merged"
    if all(d.status in ("failed", "merged") for d in deliveries):
        return "failed"
    return "pending"


def _alert(row: Row, deliveries: tuple[Delivery, ...]) -> Alert:
    return Alert(
        alert_id=row["alert_id"],
        customer_id=row["customer_id"],
        customer_name=row["customer_name"],
        tier=row["tier"],
        manager=Manager(
            manager_id=row["manager_id"],
            name=row["manager_name"],
            email=row["manager_email"],
            webhook_url=row["manager_webhook_url"],
            timezone=row["manager_timezone"],
        ),
        severity=row["severity"],
        suggested_action=row["suggested_action"],
        window_start=_dt(row["window_start"]),
        window_end=_dt(row["window_end"]),
        first_event_at=_dt(row["first_event_at"]),
        last_event_at=_dt(row["last_event_at"]),
        event_count=row["event_count"],
        status=_status(deliveries),
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        deliveries=deliveries,
    )


# -- lifecycle helpers (each runs inside the caller's transaction) -----------------------


def _write_history(
    conn: Database, alert_id: str, action: HistoryAction, from_state: AlertState | None,
    to_state: AlertState, actor: str, via: str, note: str | None, stamp: str,
) -> HistoryEntry:
    history_id = conn.execute(
        """INSERT INTO alert_history (alert_id, action, from_state, to_state, actor, via, note, at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING history_id""",
        (alert_id, action, from_state, to_state, actor, via, note, stamp),
    ).fetchone()[0]
    return HistoryEntry(history_id=int(history_id), alert_id=alert_id, action=action,
                        from_state=from_state, to_state=to_state, actor=actor, via=via,
                        note=note, at=_dt(stamp))


def _history_entry(row: Row) -> HistoryEntry:
    return HistoryEntry(history_id=row["history_id"], alert_id=row["alert_id"],
                        action=row["action"], from_state=row["from_state"],
                        to_state=row["to_state"], actor=row["actor"], via=row["via"],
                        note=row["note"], at=_dt(row["at"]))


def _after_sent(conn: Database, delivery_id: int) -> None:
    row = conn.execute(
        # Locks the alert (PostgreSQL) before its state is read: an acknowledgement by
        # another instance in between is never overwritten.
        f"""SELECT d.alert_id, d.channel, d.recipient_id, d.sent_at, a.state, a.manager_id
        FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
        WHERE d.delivery_id = ?{conn.for_update}""",
        (delivery_id,),
    ).fetchone()
    if row is None:  # a digest's or an incident notice's row: no alert of its own
        _after_notice_sent(conn, delivery_id)
        return
    state: AlertState = row["state"]
    new_state: AlertState = "notified" if state in ("open", "failed") else state
    if new_state != state:
        conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (new_state, row["alert_id"]))
    _write_history(conn, row["alert_id"], "notified", state, new_state,
                   row["recipient_id"] or row["manager_id"], row["channel"], None, row["sent_at"])


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


def _after_notice_sent(conn: Database, delivery_id: int) -> None:
    # An incident notice names its manager's clients: each of their alerts that nobody
    # was told of yet is now notified, with the channel and the incident in its history.
    # A summary does the same for the capped alerts it lists.
    summary = conn.execute(
        """SELECT d.channel, d.recipient_id, d.sent_at, d.alert_id FROM deliveries d
        JOIN summaries s ON s.summary_id = d.alert_id WHERE d.delivery_id = ?""",
        (delivery_id,)).fetchone()
    if summary is not None:
        for alert in conn.execute(
                "SELECT alert_id, state FROM alerts WHERE summary_id = ? AND state IN ('open', 'failed') "
                f"ORDER BY alert_id{conn.for_update}",
                (summary["alert_id"],)).fetchall():
            conn.execute("UPDATE alerts SET state = 'notified' WHERE alert_id = ?", (alert["alert_id"],))
            _write_history(conn, alert["alert_id"], "notified", alert["state"], "notified",
                           summary["recipient_id"], summary["channel"],
                           f"in summary {summary['alert_id']} (rate cap)", summary["sent_at"])
        return
    row = conn.execute(
        """SELECT d.channel, d.recipient_id, d.sent_at, n.incident_id, n.manager_id, n.kind
        FROM deliveries d JOIN incident_notices n ON n.notice_id = d.alert_id
        WHERE d.delivery_id = ?""", (delivery_id,)).fetchone()
    if row is None or row["kind"] in ("resolved", "escalated"):
        return
    # Locked (PostgreSQL) in alert order before their states are read, as in _after_sent.
    alerts = conn.execute(
        f"""SELECT a.alert_id, a.state FROM incident_alerts l JOIN alerts a ON a.alert_id = l.alert_id
        WHERE l.incident_id = ? AND l.manager_id = ? AND a.state IN ('open', 'failed')
          AND l.linked_at <= ? ORDER BY a.alert_id{conn.for_update}""",
        (row["incident_id"], row["manager_id"], row["sent_at"])).fetchall()
    for alert in alerts:
        conn.execute("UPDATE alerts SET state = 'notified' WHERE alert_id = ?", (alert["alert_id"],))
        _write_history(conn, alert["alert_id"], "notified", alert["state"], "notified",
                       row["recipient_id"] or row["manager_id"], row["channel"],
                       f"in the notice of incident {row['incident_id']}", row["sent_at"])


def _after_failed(conn: Database, delivery_id: int) -> None:
    row = conn.execute(
        # Locked as in _after_sent; the count below then sees every other delivery of
        # the alert that another instance marked before it released the alert.
        f"""SELECT d.alert_id, d.channel, d.last_error, d.updated_at, a.state
        FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
        WHERE d.delivery_id = ?{conn.for_update}""",
        (delivery_id,),
    ).fetchone()
    if row is None or row["state"] != "open":  # None: a digest's row (no alert)
        return
    others = conn.execute(
        "SELECT count(*) FROM deliveries WHERE alert_id = ? AND status != 'failed'",
        (row["alert_id"],),
    ).fetchone()[0]
    if others:
        return
    conn.execute("UPDATE alerts SET state = 'failed' WHERE alert_id = ?", (row["alert_id"],))
    _write_history(conn, row["alert_id"], "failed", "open", "failed", SYSTEM_ACTOR, row["channel"],
                   row["last_error"], row["updated_at"])


def _enqueue_for(
    conn: Database, alert_id: str, manager: Manager, channels: Sequence[str], stamp: str
) -> int:
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
            (alert_id, channel, stamp, stamp, stamp, manager.manager_id, _clean_text(manager.name),
             manager.email, manager.webhook_url, manager.timezone),
        )
        count += row.rowcount
    return count


def _actor(by: str) -> str:
    text = _clean_text(by.strip())
    if not text or len(text) > _MAX_ACTOR_CHARS:
        raise ValueError(f"'by' must be 1 to {_MAX_ACTOR_CHARS} characters")
    return text


def _via(via: str) -> str:
    if not _VIA.fullmatch(via):
        raise ValueError("'via' must be a short channel name such as api, link or cli")
    return via


def _note(note: str | None) -> str | None:
    if note is None or not note.strip():
        return None
    return _clean_text(note.strip())[:_MAX_NOTE_CHARS]


def _encode_cursor(created_at: str, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{alert_id}".encode()).decode("ascii")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, alert_id = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("|")
        _dt(created_at)
    except (ValueError, UnicodeError) as error:
        raise ValueError("cursor is not one this store returned") from error
    return created_at, alert_id
