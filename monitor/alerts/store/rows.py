"""The alert store's rows: stored text to models and back, and the history rows every part writes.

Times are stored as one fixed-width UTC text (:func:`utc_text`), so comparing text in
SQL compares times. What people type (actor, channel name, note) and free text
from events is PAN-scrubbed and bounded before it is stored. A function that takes
``conn`` runs inside the caller's transaction and never commits.

Every module of :mod:`monitor.alerts.store` builds on these; this one imports no other
part of the store but the database adapter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from monitor.alerts.routing import is_person_channel
from monitor.alerts.states import MAX_NOTE_CHARS, AlertState, HistoryAction, HistoryEntry
from monitor.alerts.store.db import Database, Row
from monitor.domain import Alert, AlertEvent, AlertStatus, Delivery, Manager
from monitor.privacy import scrub_pans

__all__ = [
    "EVENT_COLUMNS",
    "MAX_PAGE",
    "alert_from_row",
    "clean_actor",
    "clean_note",
    "clean_via",
    "delivery_from_row",
    "event_from_row",
    "history_entry_from_row",
    "note_on_opened",
    "parse_utc",
    "scrubbed",
    "utc_text",
    "write_history",
]

#: The columns of ``alert_events``, in the order the store inserts them.
EVENT_COLUMNS: Final = (
    "event_id", "alert_id", "occurred_at", "channel", "terminal_id", "merchant_id", "txn_type",
    "amount_minor", "currency", "response_code", "outcome", "response_meaning", "status",
    "card_ref", "pan_masked", "entry_mode", "latency_ms", "city", "region", "branch_id",
    "merchant_name", "severity", "suggested_action",
)
#: Most rows one page of a listing returns (find_alerts, list_incidents).
MAX_PAGE: Final = 500
# Bounds on what people type into the history (an API caller must not bloat the store).
_MAX_ACTOR_CHARS: Final = 200
_VIA: Final = re.compile(r"[a-z][a-z0-9_.:-]{0,31}")
#: Short texts :func:`scrubbed` found free of PANs (a bounded set: cleared when full).
_CLEAN_TEXTS: dict[str, None] = {}
_CLEAN_TEXTS_MAX: Final = 4096
_CLEAN_TEXT_CHARS: Final = 256


def utc_text(value: datetime) -> str:
    """The stored form of a time: ISO 8601 in UTC with microseconds (fixed width).

    Raises:
        ValueError: ``value`` is naive.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the alert store")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc(value: str) -> datetime:
    """The aware time of a stored time text (:func:`utc_text`)."""
    return datetime.fromisoformat(value)


def _maybe_utc(value: str | None) -> datetime | None:
    return parse_utc(value) if value else None


def scrubbed(value: str) -> str:
    """``value`` with anything that looks like a PAN masked (free text, names).

    A short text found free of PANs is remembered (:data:`_CLEAN_TEXTS`): the rules'
    actions, the response meanings and the VIP clients' names come back batch after
    batch, and the next time they are not scanned again. A text that held a PAN is
    never remembered.
    """
    if value in _CLEAN_TEXTS:
        return value
    result = scrub_pans(value.encode()).decode()
    if result == value and len(value) <= _CLEAN_TEXT_CHARS:
        if len(_CLEAN_TEXTS) >= _CLEAN_TEXTS_MAX:
            _CLEAN_TEXTS.clear()
        _CLEAN_TEXTS[value] = None
    return result


def clean_note(note: str | None) -> str | None:
    """A history note as stored: stripped, PAN-scrubbed, at most 2,000 characters; ``None`` if blank."""
    if note is None or not note.strip():
        return None
    return scrubbed(note.strip())[:MAX_NOTE_CHARS]


def clean_actor(by: str) -> str:
    """Who did it (manager ID or operator name) as stored: stripped and PAN-scrubbed.

    Raises:
        ValueError: empty, or longer than 200 characters.
    """
    text = scrubbed(by.strip())
    if not text or len(text) > _MAX_ACTOR_CHARS:
        raise ValueError(f"'by' must be 1 to {_MAX_ACTOR_CHARS} characters")
    return text


def clean_via(via: str) -> str:
    """The channel a change came through (``api``, ``link``, ``cli``...), checked.

    Raises:
        ValueError: not a short lower-case channel name.
    """
    if not _VIA.fullmatch(via):
        raise ValueError("'via' must be a short channel name such as api, link or cli")
    return via


def delivery_from_row(row: Row) -> Delivery:
    """The :class:`~monitor.domain.Delivery` of a ``deliveries`` row."""
    return Delivery(
        delivery_id=row["delivery_id"],
        alert_id=row["alert_id"],
        channel=row["channel"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=parse_utc(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=parse_utc(row["created_at"]),
        sent_at=_maybe_utc(row["sent_at"]),
        first_attempt_at=_maybe_utc(row["first_attempt_at"]),
        fallback_at=_maybe_utc(row["fallback_at"]),
        resent_by=row["resent_by"],
        resent_at=_maybe_utc(row["resent_at"]),
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


def alert_from_row(row: Row, deliveries: tuple[Delivery, ...]) -> Alert:
    """The :class:`~monitor.domain.Alert` of an ``alerts`` row with its deliveries.

    Its ``status`` is derived from the deliveries to people (pass ``()`` when they are
    not read: the status then reads ``unrouted``).
    """
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
        window_start=parse_utc(row["window_start"]),
        window_end=parse_utc(row["window_end"]),
        first_event_at=parse_utc(row["first_event_at"]),
        last_event_at=parse_utc(row["last_event_at"]),
        event_count=row["event_count"],
        status=_status(deliveries, late=bool(row["late"]), unroutable=bool(row["unroutable"])),
        created_at=parse_utc(row["created_at"]),
        updated_at=parse_utc(row["updated_at"]),
        deliveries=deliveries,
        late=bool(row["late"]),
        unroutable=bool(row["unroutable"]),
    )


def event_from_row(row: Row) -> AlertEvent:
    """The :class:`~monitor.domain.AlertEvent` of an ``alert_events`` row."""
    fields = {name: row[name] for name in EVENT_COLUMNS[3:-2]}
    return AlertEvent(event_id=row["event_id"], occurred_at=parse_utc(row["occurred_at"]), **fields)


def history_entry_from_row(row: Row) -> HistoryEntry:
    """The :class:`~monitor.alerts.states.HistoryEntry` of an ``alert_history`` row."""
    return HistoryEntry(history_id=row["history_id"], alert_id=row["alert_id"],
                        action=row["action"], from_state=row["from_state"],
                        to_state=row["to_state"], actor=row["actor"], via=row["via"],
                        note=row["note"], at=parse_utc(row["at"]), outcome=row["outcome"])


def write_history(
    conn: Database, alert_id: str, action: HistoryAction, from_state: AlertState | None,
    to_state: AlertState, actor: str, via: str, note: str | None, stamp: str,
    outcome: str | None = None,
) -> HistoryEntry:
    """Append one row to an alert's history (``stamp``: a :func:`utc_text` time).

    Returns:
        The row written, with its ``history_id``.
    """
    history_id = conn.execute(
        """INSERT INTO alert_history (alert_id, action, from_state, to_state, actor, via, note, at,
                                      outcome)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING history_id""",
        (alert_id, action, from_state, to_state, actor, via, note, stamp, outcome),
    ).fetchone()[0]
    return HistoryEntry(history_id=int(history_id), alert_id=alert_id, action=action,
                        from_state=from_state, to_state=to_state, actor=actor, via=via,
                        note=note, at=parse_utc(stamp), outcome=outcome)


def note_on_opened(conn: Database, alert_id: str, note: str) -> None:
    """Append ``note`` to the note of the alert's latest ``opened`` history row (2,000 characters at most)."""
    conn.execute(
        """UPDATE alert_history SET note = substr(CASE WHEN note IS NULL THEN ? ELSE note || '; ' || ? END,
                                                   1, 2000)
        WHERE history_id = (SELECT max(history_id) FROM alert_history
                            WHERE alert_id = ? AND action = 'opened')""",
        (note, note, alert_id))
