"""Helpers the alert store's modules share: stamps, scrubbing, rows to models, history, outbox rows.

:mod:`monitor.alerts.store` and its query mixins (:mod:`._store_lifecycle`,
:mod:`._store_digests`, :mod:`._store_storm`) use these; a helper that takes ``conn``
runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, ParamSpec, TypeVar

import tenacity

from monitor.alerts.ratelimit import RateLimit
from monitor.alerts.routing import is_person_channel
from monitor.alerts.states import AlertState, HistoryAction, HistoryEntry
from monitor.alerts.store.db import Database, Row, is_transient
from monitor.domain import Alert, AlertStatus, Delivery, Manager
from monitor.incidents.rules import IncidentRules
from monitor.privacy import scrub_pans

__all__ = [
    "_MAX_PAGE",
    "StoreConnection",
    "_Routes",
    "_alert",
    "_clean_text",
    "_delivery",
    "_dt",
    "_enqueue_for",
    "_history_entry",
    "_note",
    "_retried",
    "_ts",
    "_write_history",
]

# The store's logger, where the retries of _retried have always been logged.
log = logging.getLogger("monitor.alerts.store")
P = ParamSpec("P")
R = TypeVar("R")

# A deadlock aborts one of two transactions: running it again twice more is plenty.
_TRANSACTION_ATTEMPTS: Final = 3
# No new attempt after this many seconds: a lock or statement timeout (10 s and more)
# is not waited out twice here; the caller's backoff takes over.
_RETRY_WINDOW_SECONDS: Final = 5.0
# Bounds on what people type into the history (an API caller must not bloat the store).
_MAX_NOTE_CHARS: Final = 2000
# Most rows one page of a listing returns (find_alerts, list_incidents).
_MAX_PAGE: Final = 500


class StoreConnection:
    """What the query mixins use of :class:`~monitor.alerts.store.AlertStore`, which sets it up."""

    _lock: threading.Lock  # guards _conn; a connection is not thread-safe
    _conn: Database  # the store's one connection
    _closing: bool  # close() began: transient errors are no longer retried
    # One write transaction: BEGIN IMMEDIATE on SQLite, READ COMMITTED on PostgreSQL.
    _transaction: Callable[[], AbstractContextManager[Database]]


@dataclass(frozen=True, slots=True)
class _Routes:
    enabled: tuple[str, ...]  # manager channels that are configured
    sinks: tuple[str, ...]  # global sinks every new alert goes to
    managers: Mapping[str, Manager] | None = None  # <manager_id: registry entry>, for backups
    incidents: IncidentRules | None = None  # storm control (None: every alert on its own)
    rate_limit: RateLimit | None = None  # per-manager message cap (None: no cap)


def _ts(value: datetime) -> str:
    # One fixed-width UTC format, so text comparison in SQL is time comparison.
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the alert store")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _clean_text(value: str) -> str:
    return scrub_pans(value.encode()).decode()


def _retried(method: Callable[P, R]) -> Callable[P, R]:
    """Run a write method again, briefly, when it failed in a way that may pass (:func:`is_transient`).

    Each write method is one transaction with no effect outside it, so running it again
    is safe. What passes in a moment is retried here: a deadlock (two instances locking
    the same rows in opposite orders: ``record`` orders its alert locks, but incident
    changes, summaries and notices touch rows in the order of their own data), a
    server restart or failover a few seconds long. At most :data:`_TRANSACTION_ATTEMPTS`
    attempts, none started after :data:`_RETRY_WINDOW_SECONDS`; then the error is
    raised, and riding out a longer outage is the caller's job (with backoff and its
    stop signal). A store that is closing is not retried.
    """
    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        retrying = tenacity.Retrying(
            stop=(tenacity.stop_after_attempt(_TRANSACTION_ATTEMPTS)
                  | tenacity.stop_after_delay(_RETRY_WINDOW_SECONDS)),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
            retry=tenacity.retry_if_exception(
                lambda error: is_transient(error) and not getattr(store, "_closing", False)),
            before_sleep=lambda state: log.warning(
                "alert store: %s failed (%s), trying again (%d/%d)", method.__name__,
                _error_name(state), state.attempt_number + 1, _TRANSACTION_ATTEMPTS),
            reraise=True,
        )
        return retrying(method, *args, **kwargs)
    return run


def _maybe_dt(value: str | None) -> datetime | None:
    return _dt(value) if value else None


def _error_name(state: tenacity.RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome is not None else None
    return type(error).__name__ if error is not None else "?"


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
        sent_at=_maybe_dt(row["sent_at"]),
        first_attempt_at=_maybe_dt(row["first_attempt_at"]),
        fallback_at=_maybe_dt(row["fallback_at"]),
        resent_by=row["resent_by"],
        resent_at=_maybe_dt(row["resent_at"]),
    )


def _status(deliveries: Sequence[Delivery], *, late: bool, unroutable: bool) -> AlertStatus:
    # Only deliveries to people count: a sink that accepted it told nobody.
    people = [d for d in deliveries if is_person_channel(d.channel)]
    if any(d.status == "sent" for d in people):
        return "notified"
    if late:
        return "late"
    if unroutable or not people:
        return "unrouted"
    if all(d.status == "merged" for d in people):
        return "merged"
    if all(d.status in ("failed", "merged") for d in people):
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
        status=_status(deliveries, late=bool(row["late"]), unroutable=bool(row["unroutable"])),
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        deliveries=deliveries,
        late=bool(row["late"]),
        unroutable=bool(row["unroutable"]),
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


def _note(note: str | None) -> str | None:
    if note is None or not note.strip():
        return None
    return _clean_text(note.strip())[:_MAX_NOTE_CHARS]
