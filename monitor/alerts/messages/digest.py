"""The daily digest: each manager's alerts since their last digest, in one message.

A manager with a ``digest_at`` time in the registry (``18:00``, local to their
``timezone``) gets, once per local day, a summary of the alerts of their clients
recorded since their previous digest: how many of each severity and in each state,
which clients were affected, the alerts still not acknowledged, and the late ones
(failures processed long after they happened, which paged nobody). A period
without alerts sends nothing. An away manager gets none; their first digest back
covers the whole absence.

How one digest happens, step by step (:func:`monitor.alerts.jobs.digests_due`, from
an APScheduler job every minute, on every instance):

1. for each manager with ``digest_at``, compute the instant their wall clock shows
   ``digest_at`` today (RFC 5545: a 02:30 skipped by the spring-forward change is
   03:30 summer time, a 02:30 repeated by the fall-back change is the first one);
2. if that instant has passed, claim ``(manager_id, local date)`` in the store
   (:meth:`~monitor.alerts.store.AlertStore.claim_digest`): one unique row, whose
   insertion and the digest's outbox row share one transaction. A second instance,
   or the same one a minute later, finds the row and does nothing — so a digest is
   sent once per local day, never skipped on the short day nor doubled on the long
   one, however many instances run;
3. the delivery worker sends the outbox row like an alert (retries with backoff,
   fallback, metrics), rendering it when it sends (:func:`render_digest_delivery`),
   so the states are those of sending time.

The message's ``alert_id`` is the digest ID (``dg-...``), so its idempotency key is
``dg-...:email`` and its ``Message-ID`` is stable across retries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.preferences import manager_zone
from monitor.alerts.store import DigestRecord
from monitor.domain import SEVERITIES, Alert, Delivery, Manager
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from monitor.alerts.states import AlertState
    from monitor.alerts.store import AlertStore

__all__ = ["PAYLOAD_SCHEMA", "render_digest", "render_digest_delivery"]

#: Version of the digest ``payload`` shape.
PAYLOAD_SCHEMA: Final = "cardmon.digest.v1"
#: States in which an alert still waits for someone to own it.
_UNACKNOWLEDGED: Final = ("open", "notified", "failed")
_STATE_ORDER: Final = ("open", "notified", "failed", "acknowledged", "resolved")
# A digest lists at most this many unacknowledged alerts (the counts stay exact).
_MAX_LISTED: Final = 50


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def _counts(values: Iterable[str], order: Sequence[str]) -> str:
    counted = Counter(values)
    return " · ".join(f"{name} {counted[name]}" for name in order if counted[name]) or "none"


def render_digest(
    record: DigestRecord,
    manager: Manager,
    alerts: Sequence[tuple[Alert, AlertState]],
) -> AlertMessage:
    """Render a digest for its manager.

    Args:
        record: the claimed digest (its period).
        manager: the recipient (name, address, zone; times are shown in that zone).
        alerts: the alerts of the period with their current state, oldest first.

    Returns:
        An :class:`AlertMessage` whose ``alert_id`` is the digest ID (``idempotency_key``
        is left for the caller).
    """
    zone = manager_zone(manager)
    day = record.local_date.strftime("%a %d %b %Y")
    # Late alerts (stale events: nobody was paged) have their own section, not "waiting".
    late = [alert for alert, _ in alerts if alert.late]
    waiting = [(alert, state) for alert, state in alerts
               if state in _UNACKNOWLEDGED and not alert.late]
    clients: dict[str, tuple[Alert, int]] = {}  # <customer_id: (latest alert, alert count)>
    for alert, _ in alerts:
        clients[alert.customer_id] = (alert, clients.get(alert.customer_id, (alert, 0))[1] + 1)
    by_severity = _counts((a.severity for a, _ in alerts), tuple(reversed(SEVERITIES)))
    subject = (f"[DIGEST] {manager.name} — {day}: {len(alerts)} alert(s) "
               f"({by_severity.replace(' · ', ', ')}), {len(waiting)} unacknowledged"
               + (f", {len(late)} late" if late else ""))
    local = "%a %d %b %Y, %H:%M %Z"
    lines = [
        f"Daily alert digest for {manager.name} ({manager.manager_id})",
        (f"Period:      {record.period_start.astimezone(zone).strftime(local)} – "
         f"{record.period_end.astimezone(zone).strftime(local)}"),
        "",
        f"Alerts:      {len(alerts)}",
        f"By severity: {by_severity}",
        f"By state:    {_counts((s for _, s in alerts), _STATE_ORDER)}",
        "",
        f"Clients affected ({len(clients)}):",
    ]
    for customer_id, (alert, count) in sorted(clients.items(), key=lambda item: item[1][0].customer_name):
        lines.append(f"  {alert.customer_name} — {alert.tier} (client {customer_id}): {count} alert(s)")
    lines += ["", f"Not acknowledged yet ({len(waiting)}), oldest first:" if waiting
              else "No alert of the period is waiting for an acknowledgement."]
    for alert, state in waiting[:_MAX_LISTED]:
        lines.append(
            f"  {alert.created_at.astimezone(zone).strftime('%a %d %b %H:%M %Z')}  "
            f"[{alert.severity.upper()}] {alert.customer_name} ({alert.tier}): "
            f"{alert.event_count} failure(s), {state} — alert {alert.alert_id}")
    if len(waiting) > _MAX_LISTED:
        lines.append(f"  … and {len(waiting) - _MAX_LISTED} more")
    if late:
        lines += ["", (f"Late ({len(late)}): failures cardmon processed long after they happened "
                       "(a replay after an outage); nobody was paged about them:")]
        for alert in late[:_MAX_LISTED]:
            lines.append(
                f"  happened {alert.first_event_at.astimezone(zone).strftime('%a %d %b %H:%M %Z')}  "
                f"[{alert.severity.upper()}] {alert.customer_name} ({alert.tier}): "
                f"{alert.event_count} failure(s) — alert {alert.alert_id}")
        if len(late) > _MAX_LISTED:
            lines.append(f"  … and {len(late) - _MAX_LISTED} more")
    lines += ["", (f"Digest {record.digest_id} · alerts recorded at or after the period's start "
                   "and before its end")]
    text = _scrub("\n".join(lines) + "\n")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "digest_id": record.digest_id,
        "manager": {"manager_id": manager.manager_id, "name": manager.name},
        "local_date": record.local_date.isoformat(),
        "period_start": record.period_start.isoformat(),
        "period_end": record.period_end.isoformat(),
        "alert_count": len(alerts),
        "by_severity": dict(Counter(a.severity for a, _ in alerts)),
        "by_state": dict(Counter(s for _, s in alerts)),
        "clients": [{"customer_id": c, "name": a.customer_name, "tier": a.tier, "alerts": n}
                    for c, (a, n) in sorted(clients.items())],
        "unacknowledged": [{"alert_id": a.alert_id, "customer_id": a.customer_id,
                            "severity": a.severity, "state": s,
                            "created_at": a.created_at.isoformat()} for a, s in waiting],
        "late": [{"alert_id": a.alert_id, "customer_id": a.customer_id, "severity": a.severity,
                  "first_event_at": a.first_event_at.isoformat(),
                  "created_at": a.created_at.isoformat()} for a in late],
        "subject": _scrub(subject),
        "text": text,
    }
    return AlertMessage(
        alert_id=record.digest_id,
        subject=_scrub(subject),
        text=text,
        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
        email=manager.email,
        webhook_url=manager.webhook_url,
    )


def render_digest_delivery(store: AlertStore, delivery: Delivery) -> AlertMessage:
    """Render the message of a digest's outbox row (synchronous: call it through a thread).

    Raises:
        LookupError: the digest or its recipient is not in the store.
    """
    record = store.digest(delivery.alert_id)
    manager = store.delivery_recipient(delivery.delivery_id)
    if record is None or manager is None:
        raise LookupError(f"digest {delivery.alert_id} is not in the store")
    alerts = store.manager_alerts(record.manager_id, record.period_start, record.period_end)
    message = render_digest(record, manager, alerts)
    return message.for_channel(delivery.channel)
