"""The durable alert store and its delivery outbox (SQLite).

What it guarantees, step by step, for one call of :meth:`AlertStore.record`:

1. open one ``BEGIN IMMEDIATE`` transaction;
2. insert each event keyed by ``event_id``; an ``event_id`` already stored (a replay
   after a rebalance or a restart) is ignored and counted as a duplicate;
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
No raw PAN is stored: ``card_ref``/``pan_masked`` that look like a PAN are masked
and free text is PAN-scrubbed before it is written.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Self

from monitor.alerts.model import (
    SEVERITIES,
    Alert,
    AlertEvent,
    AlertStatus,
    Delivery,
    Manager,
    VipFailure,
)
from monitor.alerts.routing import channels_for
from monitor.decoder import is_pan, mask_pan, scrub_pans

__all__ = ["AlertStore", "RecordResult", "alert_id_for", "window_start_for"]

#: The issue's grouping window: 10 minutes of event time.
DEFAULT_WINDOW_SECONDS: Final = 600
# Longer than any send (the worker bounds a send to well under this), so a row claimed
# by a worker that crashed mid-send becomes due again after the lease.
_DEFAULT_LEASE_SECONDS: Final = 120.0
# Bounded so a huge exception text cannot bloat the outbox.
_MAX_ERROR_CHARS: Final = 2000
_SCHEMA_VERSION: Final = 1
_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    tier TEXT NOT NULL,
    manager_id TEXT NOT NULL,
    manager_name TEXT NOT NULL,
    manager_email TEXT,
    manager_webhook_url TEXT,
    manager_timezone TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    suggested_action TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    first_event_at TEXT NOT NULL,
    last_event_at TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_customer ON alerts (customer_id, window_start);
CREATE TABLE IF NOT EXISTS alert_events (
    event_id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
    occurred_at TEXT NOT NULL,
    channel TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    merchant_id TEXT,
    txn_type TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    response_code TEXT,
    outcome TEXT NOT NULL,
    response_meaning TEXT NOT NULL,
    status TEXT NOT NULL,
    card_ref TEXT,
    pan_masked TEXT,
    entry_mode TEXT,
    latency_ms REAL,
    city TEXT,
    region TEXT,
    branch_id TEXT,
    severity TEXT NOT NULL,
    suggested_action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_by_alert ON alert_events (alert_id, occurred_at);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
    channel TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (alert_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
"""

_EVENT_COLUMNS: Final = (
    "event_id", "alert_id", "occurred_at", "channel", "terminal_id", "merchant_id", "txn_type",
    "amount_minor", "currency", "response_code", "outcome", "response_meaning", "status",
    "card_ref", "pan_masked", "entry_mode", "latency_ms", "city", "region", "branch_id",
    "severity", "suggested_action",
)
_INSERT_EVENT: Final = (
    f"INSERT OR IGNORE INTO alert_events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
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


@dataclass(frozen=True, slots=True)
class _Routes:
    enabled: tuple[str, ...]  # manager channels that are configured
    sinks: tuple[str, ...]  # global sinks every new alert goes to


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


class AlertStore:
    """Alerts, their events and the delivery outbox in one SQLite file.

    Args:
        path: the database file; parent directories are created. ``":memory:"`` works
            for throwaway use (nothing survives ``close``).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # guards self._conn; sqlite3 objects are not thread-safe
        self._conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(
            f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={_SCHEMA_VERSION};COMMIT;"
        )

    def __repr__(self) -> str:
        return f"AlertStore(path={self._path!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; committed data stays in the file."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------

    def record(
        self,
        failures: Sequence[VipFailure],
        *,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        sinks: Sequence[str] = (),
        channels: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> RecordResult:
        """Store failures as alerts and enqueue deliveries, in one committed transaction.

        Args:
            failures: VIP failures from one batch, any order.
            window_seconds: grouping window in seconds of event time.
            sinks: global sink channel names every new alert also goes to.
            channels: the manager channels that are configured (``email``, ``webhook``);
                ``None`` means both. A manager's e-mail or webhook gets a delivery only
                when its channel is in here.
            now: wall-clock time of recording (UTC now if ``None``); new deliveries
                are due at once.

        Returns:
            A :class:`RecordResult`; it is returned only after the commit.

        Raises:
            ValueError: an event time is naive.
            sqlite3.Error: the database could not be written (nothing was committed).
        """
        if not failures:
            return RecordResult()
        stamp = _ts(now or datetime.now(UTC))
        enabled = ("email", "webhook") if channels is None else tuple(channels)
        routes = _Routes(enabled=enabled, sinks=tuple(sinks))
        new: dict[str, None] = {}
        updated: dict[str, None] = {}
        inserted = duplicate = enqueued = 0
        with self._lock, self._transaction() as conn:
            for failure in failures:
                event = _safe_event(failure.event)
                start = window_start_for(event.occurred_at, window_seconds)
                alert_id = alert_id_for(failure.customer_id, start)
                action = _clean_text(failure.suggested_action)
                occurred = _ts(event.occurred_at)
                row = conn.execute(_INSERT_EVENT, _event_row(event, alert_id, failure, action))
                if row.rowcount == 0:
                    duplicate += 1
                    continue
                inserted += 1
                if self._insert_alert(conn, failure, alert_id, start, window_seconds, action, stamp):
                    new[alert_id] = None
                    enqueued += self._enqueue(conn, alert_id, failure.manager, routes, stamp)
                    continue
                conn.execute(
                    """UPDATE alerts SET
                        event_count = event_count + 1,
                        severity = CASE WHEN ? > severity_rank THEN ? ELSE severity END,
                        suggested_action = CASE WHEN ? > severity_rank THEN ? ELSE suggested_action END,
                        severity_rank = max(severity_rank, ?),
                        first_event_at = min(first_event_at, ?),
                        last_event_at = max(last_event_at, ?),
                        updated_at = ?
                    WHERE alert_id = ?""",
                    (_RANK[failure.severity], failure.severity, _RANK[failure.severity], action,
                     _RANK[failure.severity], occurred, occurred, stamp, alert_id),
                )
                if alert_id not in new:
                    updated[alert_id] = None
        return RecordResult(
            new_alert_ids=tuple(new),
            updated_alert_ids=tuple(updated),
            events_inserted=inserted,
            events_duplicate=duplicate,
            deliveries_enqueued=enqueued,
        )

    @staticmethod
    def _insert_alert(
        conn: sqlite3.Connection,
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
            """INSERT OR IGNORE INTO alerts (
                alert_id, customer_id, customer_name, tier, manager_id, manager_name,
                manager_email, manager_webhook_url, manager_timezone, severity, severity_rank,
                suggested_action, window_start, window_end, first_event_at, last_event_at,
                event_count, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)""",
            (alert_id, failure.customer_id, _clean_text(failure.customer_name), failure.tier,
             manager.manager_id, manager.name, manager.email, manager.webhook_url,
             manager.timezone, failure.severity, _RANK[failure.severity], action, _ts(start),
             _ts(start + timedelta(seconds=window_seconds)), occurred, occurred, stamp, stamp),
        )
        return row.rowcount == 1

    @staticmethod
    def _enqueue(
        conn: sqlite3.Connection, alert_id: str, manager: Manager, routes: _Routes, stamp: str
    ) -> int:
        # The manager's preferences for the alert's current severity (routing.py), then
        # the global sinks; the route key (``apprise:0``) names a target, never its URL.
        severity = conn.execute(
            "SELECT severity FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()[0]
        channels = [route.channel for route in channels_for(manager, severity, routes.enabled)]
        channels += [sink for sink in routes.sinks if sink not in channels]
        count = 0
        for channel in channels:
            row = conn.execute(
                """INSERT OR IGNORE INTO deliveries
                    (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at)
                VALUES (?, ?, 'pending', 0, ?, ?, ?)""",
                (alert_id, channel, stamp, stamp, stamp),
            )
            count += row.rowcount
        return count

    # -- the outbox ------------------------------------------------------------------

    def claim_due(
        self, now: datetime, limit: int = 50, *, lease_seconds: float = _DEFAULT_LEASE_SECONDS
    ) -> list[Delivery]:
        """Return pending deliveries due at ``now`` and lease them to the caller.

        A claimed row's ``next_attempt_at`` moves ``lease_seconds`` ahead, so another
        pass does not send it concurrently; if the caller crashes before marking it,
        the row becomes due again when the lease ends.

        Args:
            now: timezone-aware current time.
            limit: most rows to return, oldest due first.
            lease_seconds: how long the claim holds, in seconds.

        Returns:
            The claimed rows as they were before the claim.
        """
        lease_end = _ts(now + timedelta(seconds=lease_seconds))
        with self._lock, self._transaction() as conn:
            rows = conn.execute(
                """SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?
                ORDER BY next_attempt_at, delivery_id LIMIT ?""",
                (_ts(now), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ?",
                [(lease_end, row["delivery_id"]) for row in rows],
            )
        return [_delivery(row) for row in rows]

    def mark_sent(self, delivery_id: int, at: datetime) -> bool:
        """Record that the channel accepted a pending delivery; ``False`` if not pending."""
        return self._mark(
            "status = 'sent', attempts = attempts + 1, sent_at = ?, updated_at = ?",
            (_ts(at), _ts(at)), delivery_id,
        )

    def mark_retry(self, delivery_id: int, error: str, next_attempt_at: datetime) -> bool:
        """Record a failed attempt and when to try again; ``False`` if not pending."""
        return self._mark(
            "attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?",
            (_error_text(error), _ts(next_attempt_at), _ts(datetime.now(UTC))), delivery_id,
        )

    def mark_failed(self, delivery_id: int, error: str) -> bool:
        """Record the last failed attempt and give up; ``False`` if not pending."""
        return self._mark(
            "status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ?",
            (_error_text(error), _ts(datetime.now(UTC))), delivery_id,
        )

    def _mark(self, assignments: str, values: tuple[Any, ...], delivery_id: int) -> bool:
        with self._lock, self._transaction() as conn:
            row = conn.execute(
                f"UPDATE deliveries SET {assignments} WHERE delivery_id = ? AND status = 'pending'",
                (*values, delivery_id),
            )
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


def _event(row: sqlite3.Row) -> AlertEvent:
    fields = {name: row[name] for name in _EVENT_COLUMNS[3:-2]}
    return AlertEvent(event_id=row["event_id"], occurred_at=_dt(row["occurred_at"]), **fields)


def _delivery(row: sqlite3.Row) -> Delivery:
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
    if all(d.status == "failed" for d in deliveries):
        return "failed"
    return "pending"


def _alert(row: sqlite3.Row, deliveries: tuple[Delivery, ...]) -> Alert:
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
