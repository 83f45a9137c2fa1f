"""Export stored alerts as JSON Lines (``cardmon alerts export --format jsonl``).

One JSON object per alert, oldest window first, with its lifecycle ``state``, its
``late`` and ``unroutable`` flags, its deliveries (``recipient_id`` set for an escalation's), its ``history`` (every
transition and event: ``action``, ``from_state``, ``to_state``, ``by``, ``via``,
``note``, ``outcome``, ``at``), ``time_to_acknowledge_seconds`` and
``time_to_first_contact_seconds`` (from its recording to its first acknowledgement, and
to its first resolution whose outcome reached the client; ``null`` until then), its
``recovery`` (:func:`recovery_record`: ``null`` without a recovery watch) and its
events (oldest first). Event fields are the canonical contract names of
:class:`monitor.domain.TransactionEvent`; times are RFC 3339 in UTC; money is integer
minor units plus the ISO 4217 currency. Nothing here holds a raw PAN (the store never
has one), and webhook URLs and e-mail addresses are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from monitor.alerts.states import CONTACT_OUTCOMES, AlertState, HistoryEntry
from monitor.alerts.store import AlertStore, Recovery
from monitor.domain import Alert, AlertEvent, Delivery

__all__ = ["alert_record", "export_jsonl", "history_record", "recovery_record"]


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _event(event: AlertEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "occurred_at": _time(event.occurred_at),
        "channel": event.channel,
        "terminal_id": event.terminal_id,
        "merchant_id": event.merchant_id,
        "merchant_name": event.merchant_name,
        "txn_type": event.txn_type,
        "amount_minor": event.amount_minor,
        "currency": event.currency,
        "status": event.status,
        "response_code": event.response_code,
        "response_meaning": event.response_meaning,
        "outcome": event.outcome,
        "card_ref": event.card_ref,
        "pan_masked": event.pan_masked,
        "entry_mode": event.entry_mode,
        "latency_ms": event.latency_ms,
        "city": event.city,
        "region": event.region,
        "branch_id": event.branch_id,
    }


def _delivery(delivery: Delivery, recipient_id: str | None = None) -> dict[str, Any]:
    return {
        "channel": delivery.channel,
        "recipient_id": recipient_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "created_at": _time(delivery.created_at),
        "sent_at": _time(delivery.sent_at),
        "next_attempt_at": _time(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "first_attempt_at": _time(delivery.first_attempt_at),
        "fallback_at": _time(delivery.fallback_at),
        "resent_by": delivery.resent_by,
        "resent_at": _time(delivery.resent_at),
    }


def history_record(entry: HistoryEntry) -> dict[str, Any]:
    """Return the JSON-able record of one history row (who, when, through which channel)."""
    return {
        "action": entry.action,
        "from_state": entry.from_state,
        "to_state": entry.to_state,
        "by": entry.actor,
        "via": entry.via,
        "note": entry.note,
        "outcome": entry.outcome,
        "at": _time(entry.at),
    }


def recovery_record(recovery: Recovery | None) -> dict[str, Any] | None:
    """Return the JSON-able record of an alert's recovery watch (``None`` without one).

    ``status`` (``watching``, ``recovered``, ``abandoned``), ``window_ends_at`` (the
    deadline, event time), and for a recovery ``recovered_at``, ``seconds_to_recovery``
    (from the alert's first failure), ``terminal_id``, ``merchant_id``, ``channel`` and
    ``txn_type`` (of the approved transaction: any kind that failed in the alert) and
    ``same_terminal`` (the terminal that failed first); ``null`` otherwise.
    """
    if recovery is None:
        return None
    return {
        "status": recovery.status,
        "window_ends_at": _time(recovery.window_ends_at),
        "recovered_at": _time(recovery.recovered_at),
        "seconds_to_recovery": recovery.seconds_to_recovery,
        "terminal_id": recovery.terminal_id,
        "merchant_id": recovery.merchant_id,
        "channel": recovery.recovery_channel,
        "txn_type": recovery.recovery_txn_type,
        "same_terminal": recovery.same_terminal,
    }


def alert_record(
    alert: Alert,
    events: list[AlertEvent],
    *,
    state: AlertState | None = None,
    history: Sequence[HistoryEntry] = (),
    recipients: Mapping[int, str] | None = None,
    incident_id: str | None = None,
    recovery: Recovery | None = None,
) -> dict[str, Any]:
    """Return the JSON-able export record of one alert and its events.

    Args:
        alert: the alert with its deliveries.
        events: its events, oldest first.
        state: its lifecycle state (``AlertStore.state_of``).
        history: its history rows, oldest first (``AlertStore.history``).
        recipients: ``delivery_id`` → manager ID of deliveries to another manager
            than the alert's own (``AlertStore.delivery_recipients``); the others
            show ``recipient_id`` ``null`` (the alert's manager, or a sink).
        incident_id: the storm-control incident the alert belongs to, if any.
        recovery: its recovery watch (``AlertStore.recovery_of``), if any.
    """
    routed = recipients or {}
    return {
        "alert_id": alert.alert_id,
        "customer_id": alert.customer_id,
        "customer_name": alert.customer_name,
        "tier": alert.tier,
        "manager_id": alert.manager.manager_id,
        "severity": alert.severity,
        "suggested_action": alert.suggested_action,
        "window_start": _time(alert.window_start),
        "window_end": _time(alert.window_end),
        "first_event_at": _time(alert.first_event_at),
        "last_event_at": _time(alert.last_event_at),
        "event_count": alert.event_count,
        "status": alert.status,
        "state": state,
        "late": alert.late,
        "unroutable": alert.unroutable,
        "incident_id": incident_id,
        "created_at": _time(alert.created_at),
        "updated_at": _time(alert.updated_at),
        "deliveries": [_delivery(d, routed.get(d.delivery_id)) for d in alert.deliveries],
        "time_to_acknowledge_seconds": _seconds_until(alert, history, _acknowledged),
        "time_to_first_contact_seconds": _seconds_until(alert, history, _reached_the_client),
        "recovery": recovery_record(recovery),
        "history": [history_record(h) for h in history],
        "events": [_event(e) for e in events],
    }


def _acknowledged(entry: HistoryEntry) -> bool:
    return entry.action == "acknowledged"


def _reached_the_client(entry: HistoryEntry) -> bool:
    return entry.action == "resolved" and entry.outcome in CONTACT_OUTCOMES


def _seconds_until(alert: Alert, history: Sequence[HistoryEntry],
                   wanted: Callable[[HistoryEntry], bool]) -> float | None:
    """Seconds from the alert's recording to the first history row ``wanted`` picks, ``None`` if none."""
    first = next((entry for entry in history if wanted(entry)), None)
    return None if first is None else max((first.at - alert.created_at).total_seconds(), 0.0)


def export_jsonl(store: AlertStore, out: TextIO) -> int:
    """Write every stored alert to ``out`` as one JSON object per line.

    Args:
        store: the alert store to read.
        out: a text stream (a file, ``sys.stdout``).

    Returns:
        The number of alerts written.
    """
    count = 0
    for alert in store.list_alerts():
        record = alert_record(
            alert, store.alert_events(alert.alert_id), state=store.state_of(alert.alert_id),
            history=store.history(alert.alert_id),
            recipients=store.delivery_recipients(alert.alert_id),
            incident_id=store.incident_of(alert.alert_id),
            recovery=store.recovery_of(alert.alert_id),
        )
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count
