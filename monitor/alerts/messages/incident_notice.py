"""One message per manager per incident: the outage and that manager's affected clients.

An incident notice (``ic-...``) is rendered when the delivery worker sends it, so it
names every client of the manager linked to the incident by then: their name and
tier, how many failures and when (the manager's time zone), what failed (response
code and meaning, terminal), and one signed acknowledgement link per alert. An
``update`` notice marks the clients added since the previous notice; a
``resolved`` notice says when the outage ended. The same facts go into a JSON
``payload`` (schema ``cardmon.incident.v1``). Every text is PAN-scrubbed. The text is in
the recipient's language (:mod:`monitor.i18n`); the tags and the payload's data stay English.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from monitor.alerts.messages.alert import AckLinkMaker, AlertMessage, format_amount
from monitor.alerts.messages.local import local_time, reader
from monitor.domain import Alert, AlertEvent, Delivery, Manager
from monitor.i18n import N_, Translator
from monitor.incidents.model import Incident, NoticeKind
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from collections.abc import Callable

    from monitor.alerts.states import AlertState
    from monitor.alerts.store import AlertStore

__all__ = ["PAYLOAD_SCHEMA", "render_notice", "render_notice_delivery"]

#: Version of the notice ``payload`` shape.
PAYLOAD_SCHEMA: Final = "cardmon.incident.v1"
_LOCAL: Final = "%a %d %b %Y, %H:%M %Z"
_SCOPE_WORDS: Final = {"terminal": N_("Terminal"), "merchant": N_("Merchant"), "region": N_("Region"),
                       "issuer": N_("Card issuer (IIN)"),
                       "network": N_("Card network or switch: the whole")}


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def _what_failed(events: list[AlertEvent], t: Translator) -> str:
    codes = sorted({e.response_code or t.gettext("timeout") for e in events})
    meanings = sorted({t.rule_text(e.response_meaning) if e.response_meaning
                       else t.gettext("no response") for e in events})
    terminals = sorted({e.terminal_id for e in events})
    where = ", ".join(terminals[:3]) + (" …" if len(terminals) > 3 else "")
    return t.gettext("code %(codes)s (%(meanings)s) at %(terminals)s", codes=", ".join(codes),
                     meanings="; ".join(meanings), terminals=where)


def render_notice(
    incident: Incident,
    kind: NoticeKind,
    manager: Manager,
    clients: list[tuple[Alert, AlertState, datetime, list[AlertEvent]]],
    *,
    since: datetime | None = None,
    ack_urls: dict[str, str] | None = None,
    locale: str | None = None,
) -> AlertMessage:
    """Render one incident notice for one manager.

    Args:
        incident: the incident.
        kind: ``opened``, ``update`` or ``resolved``.
        manager: the recipient (times are shown in their zone).
        clients: ``(alert, state, linked_at, events)`` of the manager's affected
            clients, oldest first.
        since: for an ``update``, when the previous notice was created; clients
            linked after it are marked new.
        ack_urls: ``alert_id`` → signed acknowledgement link, for a person's channel.
        locale: the reader's BCP 47 locale; ``None``: the manager's.

    Returns:
        The message (its ``alert_id`` is left for the caller to set to the notice ID).
    """
    t = reader(manager, locale)
    title = f"{t.gettext(_SCOPE_WORDS[incident.scope])} {incident.scope_key}"
    high = max((a.severity for a, *_ in clients), key=("low", "medium", "high").index, default="high")
    owner = clients[0][0].manager if clients else manager
    if kind == "resolved":
        subject = "[RESOLVED] " + t.gettext(
            "Incident %(title)s ended — %(count)s of your clients had been affected",
            title=title, count=len(clients))
    elif kind == "escalated":
        subject = f"[INCIDENT ESCALATED {high.upper()}] " + t.gettext(
            "%(title)s outage — %(count)s client(s) of %(owner)s not acknowledged",
            title=title, count=len(clients), owner=owner.name)
    else:
        tag = "INCIDENT UPDATE" if kind == "update" else "INCIDENT"
        subject = f"[{tag} {high.upper()}] " + t.gettext(
            "%(title)s outage — %(count)s of your clients affected", title=title, count=len(clients))
    if incident.flapping:
        subject += " " + t.gettext("(flapping)")
    lines = [t.gettext("Dear %(name)s,", name=manager.name), ""]
    if kind == "escalated":
        lines += [t.gettext("%(owner)s (%(id)s) has not acknowledged these clients' alerts; "
                            "please take them over.", owner=owner.name, id=owner.manager_id), ""]
    lines += [
        t.gettext("Incident %(id)s: %(title)s is failing card transactions for many clients.",
                  id=incident.incident_id, title=title),
        t.gettext("Started:").ljust(10) + f" {local_time(t, incident.started_at, _LOCAL)}",
    ]
    if incident.ended_at is not None:
        lines.append(t.gettext("Ended:").ljust(10) + f" {local_time(t, incident.ended_at, _LOCAL)}")
    else:
        lines.append(t.gettext("Status:").ljust(10) + " " + t.gettext(
            "ongoing (last failure %(when)s)", when=local_time(t, incident.last_failure_at, _LOCAL)))
    lines.append(t.gettext("Scale:").ljust(10) + " " + t.gettext(
        "%(failures)s failed transactions, %(cards)s cards, %(terminals)s terminal(s)",
        failures=incident.failures, cards=incident.cards, terminals=incident.terminals))
    if incident.note:
        lines.append(t.gettext("Note:").ljust(10) + " " + t.gettext(
            "%(note)s — one incident, not one message per failure", note=incident.note))
    lines += ["", t.gettext("Affected clients of %(owner)s not acknowledged yet (%(count)s):",
                            owner=owner.name, count=len(clients))
              if kind == "escalated" else t.gettext("Your affected clients (%(count)s):",
                                                    count=len(clients))]
    payload_clients: list[dict[str, Any]] = []
    for alert, state, linked_at, events in clients:
        new = kind == "update" and since is not None and linked_at > since
        latest = events[-1] if events else None
        amount = (format_amount(latest.amount_minor, latest.currency,
                                locale="en_US" if t.locale == "en" else t.locale.replace("-", "_"))
                  if latest else "")
        lines.append(
            "  " + (t.gettext("NEW") + " " if new else "") + t.gettext(
                "%(name)s — %(tier)s: %(count)s failure(s), first %(when)s",
                name=alert.customer_name, tier=alert.tier, count=alert.event_count,
                when=local_time(t, alert.first_event_at, "%H:%M %Z"))
            + (t.gettext(", last %(amount)s", amount=amount) if amount else "")
            + f"; {_what_failed(events, t)} [{t.gettext(state)}]")
        url = (ack_urls or {}).get(alert.alert_id)
        if url:
            lines.append("      " + t.gettext("acknowledge: %(url)s", url=url))
        payload_clients.append({
            "alert_id": alert.alert_id, "customer_id": alert.customer_id,
            "customer_name": alert.customer_name, "tier": alert.tier, "severity": alert.severity,
            "state": state, "failures": alert.event_count, "new": new,
            "first_event_at": alert.first_event_at.isoformat(),
            "last_event_at": alert.last_event_at.isoformat(), "ack_url": url,
        })
    action = clients[0][0].suggested_action if clients else ""
    if kind == "resolved":
        lines += ["", t.gettext("The outage is over: transactions succeed again. Consider a short "
                                "call to each client above to confirm they are fine.")]
    elif action:
        lines += ["", t.gettext("Suggested action: %(action)s", action=t.rule_text(action)),
                  t.gettext("Operations owns the outage itself; acknowledge each client once you "
                            "have contacted them.")]
    text = _scrub("\n".join(lines) + "\n")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "kind": kind,
        "incident": {
            "incident_id": incident.incident_id, "scope": incident.scope,
            "scope_key": incident.scope_key, "started_at": incident.started_at.isoformat(),
            "last_failure_at": incident.last_failure_at.isoformat(),
            "ended_at": incident.ended_at.isoformat() if incident.ended_at else None,
            "failures": incident.failures, "cards": incident.cards,
            "terminals": incident.terminals, "relapses": incident.relapses,
            "flapping": incident.flapping, "note": incident.note,
        },
        "manager": {"manager_id": manager.manager_id, "name": manager.name},
        "clients": payload_clients,
        "subject": _scrub(subject),
        "text": text,
        "locale": t.locale,
    }
    return AlertMessage(
        alert_id=incident.incident_id, subject=_scrub(subject), text=text,
        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
        email=manager.email, webhook_url=manager.webhook_url,
    )


def render_notice_delivery(store: AlertStore, delivery: Delivery, *,
                           links: AckLinkMaker | None = None,
                           locale_of: Callable[[str], str | None] | None = None) -> AlertMessage:
    """Render the message of an incident notice's outbox row (synchronous: use a thread).

    ``locale_of`` gives the current registry's locale of a manager ID (the store keeps none).

    Raises:
        LookupError: the notice, its incident or its recipient is not in the store.
    """
    notice = store.incident_notice(delivery.alert_id)
    recipient = store.delivery_recipient(delivery.delivery_id)
    if notice is None or recipient is None:
        raise LookupError(f"incident notice {delivery.alert_id} is not in the store")
    incident_id, manager_id, kind, seq, _ = notice
    incident = store.get_incident(incident_id)
    if incident is None:
        raise LookupError(f"incident {incident_id} is not in the store")
    linked = store.incident_alerts(incident_id, manager_id)
    if kind == "escalated":  # the ones still waiting for someone
        linked = [item for item in linked if item[1] not in ("acknowledged", "resolved")]
    clients = [(alert, state, linked_at, store.alert_events(alert.alert_id))
               for alert, state, linked_at in linked]
    since = store.incident_notice_created(incident_id, manager_id, seq - 1) if kind == "update" else None
    person = delivery.channel.partition(":")[0] in ("email", "webhook", "apprise")
    ack_urls = ({alert.alert_id: links.url(alert.alert_id, recipient.manager_id)
                 for alert, *_ in clients} if links is not None and person and kind != "resolved"
                else None)
    message = render_notice(incident, kind, recipient, clients, since=since, ack_urls=ack_urls,
                            locale=locale_of(recipient.manager_id) if locale_of else None)
    return replace(message, alert_id=delivery.alert_id).for_channel(delivery.channel)
