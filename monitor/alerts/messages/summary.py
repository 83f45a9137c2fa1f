"""The rate-cap summary: one manager's capped alerts in one message (``sm-...``).

When a manager reached the message cap (:mod:`monitor.alerts.ratelimit`), their
further alerts wait; the summary job (:func:`monitor.alerts.jobs.summaries_due`)
claims them into one summary, and the delivery worker renders it here when it sends
it — the clients, severities, failures, each alert's state now and an
acknowledgement link per alert for a person's channel. Every text is PAN-scrubbed;
the same facts go into a JSON ``payload`` (schema ``cardmon.summary.v1``). The text is in
the recipient's language (:mod:`monitor.i18n`); the tags and the payload's data stay English.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from monitor.alerts.messages.alert import AckLinkMaker, AlertMessage
from monitor.alerts.messages.local import local_time, reader
from monitor.alerts.ratelimit import Summary
from monitor.domain import SEVERITIES, Alert, Delivery, Manager
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from collections.abc import Callable

    from monitor.alerts.states import AlertState
    from monitor.alerts.store import AlertStore

__all__ = ["PAYLOAD_SCHEMA", "render_summary", "render_summary_delivery"]

#: Version of the summary ``payload`` shape.
PAYLOAD_SCHEMA: Final = "cardmon.summary.v1"
# A summary lists at most this many alerts (the counts stay exact).
_MAX_LISTED: Final = 100


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def render_summary(
    summary: Summary,
    manager: Manager,
    alerts: Sequence[tuple[Alert, AlertState]],
    *,
    ack_urls: Mapping[str, str] | None = None,
    locale: str | None = None,
) -> AlertMessage:
    """Render a summary of capped alerts for its recipient (times in their zone, text in
    ``locale``, by default theirs).

    Returns:
        An :class:`AlertMessage` whose ``alert_id`` is the summary ID.
    """
    t = reader(manager, locale)
    by_severity = Counter(alert.severity for alert, _ in alerts)
    counts = ", ".join(f"{by_severity[s]} {t.gettext(s)}" for s in reversed(SEVERITIES) if by_severity[s])
    subject = "[SUMMARY] " + t.gettext(
        "%(count)s more alert(s) for your clients (%(counts)s) — "
        "sent together because of the message cap", count=len(alerts), counts=counts)
    local = "%a %d %b %Y, %H:%M %Z"
    lines = [
        t.gettext("Dear %(name)s,", name=manager.name),
        "",
        t.gettext("You received many alerts recently, so these %(count)s were held and are sent "
                  "together instead of one message each.", count=len(alerts)),
        t.gettext("Held from %(start)s to %(end)s.", start=local_time(t, summary.period_start, local),
                  end=local_time(t, summary.period_end, local)),
        "",
    ]
    ordered = sorted(alerts, key=lambda item: (-SEVERITIES.index(item[0].severity),
                                               item[0].first_event_at))
    for alert, state in ordered[:_MAX_LISTED]:
        lines.append(
            f"  [{alert.severity.upper()}] " + t.gettext(
                "%(name)s — %(tier)s: %(count)s failure(s) from %(when)s [%(state)s]",
                name=alert.customer_name, tier=alert.tier, count=alert.event_count,
                when=local_time(t, alert.first_event_at, "%a %H:%M %Z"), state=t.gettext(state)))
        lines.append(f"      {t.rule_text(alert.suggested_action)}")
        url = (ack_urls or {}).get(alert.alert_id)
        if url:
            lines.append("      " + t.gettext("acknowledge: %(url)s", url=url))
    if len(ordered) > _MAX_LISTED:
        lines.append("  " + t.gettext("… and %(count)s more (see the alert API)",
                                      count=len(ordered) - _MAX_LISTED))
    lines += ["", t.gettext("Summary %(id)s", id=summary.summary_id)]
    text = _scrub("\n".join(lines) + "\n")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "summary_id": summary.summary_id,
        "manager": {"manager_id": manager.manager_id, "name": manager.name},
        "period_start": summary.period_start.isoformat(),
        "period_end": summary.period_end.isoformat(),
        "alert_count": len(alerts),
        "alerts": [{"alert_id": a.alert_id, "customer_id": a.customer_id,
                    "customer_name": a.customer_name, "tier": a.tier, "severity": a.severity,
                    "state": s, "failures": a.event_count,
                    "first_event_at": a.first_event_at.isoformat(),
                    "ack_url": (ack_urls or {}).get(a.alert_id)} for a, s in ordered],
        "subject": _scrub(subject),
        "text": text,
        "locale": t.locale,
    }
    return AlertMessage(alert_id=summary.summary_id, subject=_scrub(subject), text=text,
                        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
                        email=manager.email, webhook_url=manager.webhook_url)


def render_summary_delivery(store: AlertStore, delivery: Delivery, *,
                            links: AckLinkMaker | None = None,
                            locale_of: Callable[[str], str | None] | None = None) -> AlertMessage:
    """Render the message of a summary's outbox row (synchronous: call it through a thread).

    ``locale_of`` gives the current registry's locale of a manager ID (the store keeps none).

    Raises:
        LookupError: the summary or its recipient is not in the store.
    """
    summary = store.summary(delivery.alert_id)
    recipient = store.delivery_recipient(delivery.delivery_id)
    if summary is None or recipient is None:
        raise LookupError(f"summary {delivery.alert_id} is not in the store")
    alerts = store.summary_alerts(summary.summary_id)
    person = delivery.channel.partition(":")[0] in ("email", "webhook", "apprise")
    ack_urls = ({alert.alert_id: links.url(alert.alert_id, recipient.manager_id) for alert, _ in alerts}
                if links is not None and person else None)
    message = render_summary(summary, recipient, alerts, ack_urls=ack_urls,
                             locale=locale_of(recipient.manager_id) if locale_of else None)
    return replace(message, alert_id=delivery.alert_id).for_channel(delivery.channel)
