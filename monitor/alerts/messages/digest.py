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

The text is in the manager's language (``locale``, :mod:`monitor.i18n`); the tags
(``[DIGEST]``, ``[HIGH]``) and the payload's data stay English.

The message's ``alert_id`` is the digest ID (``dg-...``), so its idempotency key is
``dg-...:email`` and its ``Message-ID`` is stable across retries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from babel.dates import format_skeleton

from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.messages.local import local_time, reader
from monitor.alerts.store import DigestRecord
from monitor.domain import SEVERITIES, Alert, Delivery, Manager
from monitor.i18n import Translator
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from collections.abc import Callable

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


def _counts(values: Iterable[str], order: Sequence[str], t: Translator) -> str:
    counted = Counter(values)
    return (" · ".join(f"{t.gettext(name)} {counted[name]}" for name in order if counted[name])
            or t.gettext("none"))


def render_digest(
    record: DigestRecord,
    manager: Manager,
    alerts: Sequence[tuple[Alert, AlertState]],
    *,
    locale: str | None = None,
) -> AlertMessage:
    """Render a digest for its manager.

    Args:
        record: the claimed digest (its period).
        manager: the recipient (name, address, zone; times are shown in that zone).
        alerts: the alerts of the period with their current state, oldest first.
        locale: the reader's BCP 47 locale; ``None``: the manager's.

    Returns:
        An :class:`AlertMessage` whose ``alert_id`` is the digest ID (``idempotency_key``
        is left for the caller).
    """
    t = reader(manager, locale)
    day = (record.local_date.strftime("%a %d %b %Y") if t.language == "en"
           else str(format_skeleton("yMMMEd", record.local_date, locale=t.locale.replace("-", "_"))))
    # Late alerts (stale events: nobody was paged) have their own section, not "waiting".
    late = [alert for alert, _ in alerts if alert.late]
    waiting = [(alert, state) for alert, state in alerts
               if state in _UNACKNOWLEDGED and not alert.late]
    clients: dict[str, tuple[Alert, int]] = {}  # <customer_id: (latest alert, alert count)>
    for alert, _ in alerts:
        clients[alert.customer_id] = (alert, clients.get(alert.customer_id, (alert, 0))[1] + 1)
    by_severity = _counts((a.severity for a, _ in alerts), tuple(reversed(SEVERITIES)), t)
    subject = "[DIGEST] " + t.gettext(
        "%(name)s — %(day)s: %(count)s alert(s) (%(severities)s), %(waiting)s unacknowledged",
        name=manager.name, day=day, count=len(alerts), severities=by_severity.replace(" · ", ", "),
        waiting=len(waiting)) + (t.gettext(", %(count)s late", count=len(late)) if late else "")
    local = "%a %d %b %Y, %H:%M %Z"
    lines = [
        t.gettext("Daily alert digest for %(name)s (%(id)s)", name=manager.name, id=manager.manager_id),
        (t.gettext("Period:").ljust(12) + f" {local_time(t, record.period_start, local)} – "
         f"{local_time(t, record.period_end, local)}"),
        "",
        t.gettext("Alerts:").ljust(12) + f" {len(alerts)}",
        t.gettext("By severity:").ljust(12) + f" {by_severity}",
        t.gettext("By state:").ljust(12) + f" {_counts((s for _, s in alerts), _STATE_ORDER, t)}",
        "",
        t.gettext("Clients affected (%(count)s):", count=len(clients)),
    ]
    for customer_id, (alert, count) in sorted(clients.items(), key=lambda item: item[1][0].customer_name):
        lines.append("  " + t.gettext("%(name)s — %(tier)s (client %(id)s): %(count)s alert(s)",
                                      name=alert.customer_name, tier=alert.tier, id=customer_id,
                                      count=count))
    lines += ["", t.gettext("Not acknowledged yet (%(count)s), oldest first:", count=len(waiting))
              if waiting else t.gettext("No alert of the period is waiting for an acknowledgement.")]
    for alert, state in waiting[:_MAX_LISTED]:
        lines.append(
            f"  {local_time(t, alert.created_at, '%a %d %b %H:%M %Z')}  "
            f"[{alert.severity.upper()}] " + t.gettext(
                "%(name)s (%(tier)s): %(count)s failure(s), %(state)s — alert %(id)s",
                name=alert.customer_name, tier=alert.tier, count=alert.event_count,
                state=t.gettext(state), id=alert.alert_id))
    if len(waiting) > _MAX_LISTED:
        lines.append("  " + t.gettext("… and %(count)s more", count=len(waiting) - _MAX_LISTED))
    if late:
        lines += ["", t.gettext("Late (%(count)s): failures cardmon processed long after they happened "
                                "(a replay after an outage); nobody was paged about them:",
                                count=len(late))]
        for alert in late[:_MAX_LISTED]:
            lines.append(
                "  " + t.gettext("happened %(when)s", when=local_time(t, alert.first_event_at,
                                                                       "%a %d %b %H:%M %Z"))
                + f"  [{alert.severity.upper()}] " + t.gettext(
                    "%(name)s (%(tier)s): %(count)s failure(s) — alert %(id)s",
                    name=alert.customer_name, tier=alert.tier, count=alert.event_count,
                    id=alert.alert_id))
        if len(late) > _MAX_LISTED:
            lines.append("  " + t.gettext("… and %(count)s more", count=len(late) - _MAX_LISTED))
    lines += ["", t.gettext("Digest %(id)s · alerts recorded at or after the period's start "
                            "and before its end", id=record.digest_id)]
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
        "locale": t.locale,
    }
    return AlertMessage(
        alert_id=record.digest_id,
        subject=_scrub(subject),
        text=text,
        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
        email=manager.email,
        webhook_url=manager.webhook_url,
    )


def render_digest_delivery(store: AlertStore, delivery: Delivery, *,
                           locale_of: Callable[[str], str | None] | None = None) -> AlertMessage:
    """Render the message of a digest's outbox row (synchronous: call it through a thread).

    ``locale_of`` gives the current registry's locale of a manager ID (the store keeps none).

    Raises:
        LookupError: the digest or its recipient is not in the store.
    """
    record = store.digest(delivery.alert_id)
    manager = store.delivery_recipient(delivery.delivery_id)
    if record is None or manager is None:
        raise LookupError(f"digest {delivery.alert_id} is not in the store")
    alerts = store.manager_alerts(record.manager_id, record.period_start, record.period_end)
    message = render_digest(record, manager, alerts,
                            locale=locale_of(manager.manager_id) if locale_of else None)
    return message.for_channel(delivery.channel)
