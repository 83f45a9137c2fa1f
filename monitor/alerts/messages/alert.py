"""Turn a stored alert into a message a relationship manager can act on.

The message speaks the manager's language (their registry ``locale``: the fixed text from
the catalogues, the response code's meaning and the suggested action from the rule files'
translations, :mod:`monitor.i18n`): the client's name and tier, the masked
card, the time in the manager's own time zone (with its abbreviation), the place
(terminal ID, merchant name and ID, city, channel), the amount formatted for its currency
(Babel, ISO 4217 exponent), the response code with its meaning and outcome class,
and what to do next. Several failures in one alert become a compact list, newest
first. The same facts go into a JSON-able ``payload`` for webhooks and files; only its
``subject`` and ``text`` are in the reader's language (its other fields are data: English
meanings and actions, ``en_US`` amounts), and ``payload["locale"]`` names the language.
The subject's tags (``[HIGH]``, ``[ESCALATED]``) stay English: mail filters match them.

Every text that leaves this module is PAN-scrubbed (defence in depth: the store
holds only masked PANs).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol
from zoneinfo import ZoneInfo

from babel.numbers import format_currency, get_currency_precision

from monitor.alerts.messages.local import local_time, reader
from monitor.domain import Alert, AlertEvent, Delivery, Manager
from monitor.i18n import N_, Translator
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from collections.abc import Callable

    from monitor.alerts.store import AlertStore

__all__ = ["AckLinkMaker", "AlertMessage", "format_amount", "render", "render_delivery"]

#: Version of the ``payload`` shape, so receivers can tell what they get.
PAYLOAD_SCHEMA: Final = "cardmon.alert.v1"
# An alert with more failures lists the newest ones only (the count is always exact).
_MAX_LISTED: Final = 20

# PCI DSS display masking, as in the event contract (first six, last four).
_MASKED_PAN: Final = re.compile(r"^[0-9]{6}[*Xx]{2,9}[0-9]{4}$")
# Channel kinds that reach a person, so their messages carry an ack link.
_PERSON_CHANNELS: Final = frozenset({"email", "webhook", "apprise"})
_CHANNEL_WORDS: Final = {"ATM": N_("ATM"), "POS": N_("card terminal (POS)"),
                         "ECOM": N_("online (e-commerce)")}
_TXN_WORDS: Final = {
    "purchase": N_("purchase"),
    "withdrawal": N_("cash withdrawal"),
    "balance_inquiry": N_("balance inquiry"),
    "transfer": N_("transfer"),
    "refund": N_("refund"),
    "reversal": N_("reversal"),
}
_OUTCOME_WORDS: Final = {
    "approved": N_("approved"),
    "technical": N_("technical problem at the bank or network"),
    "terminal": N_("terminal problem"),
    "card": N_("card problem"),
    "customer": N_("declined for the client's account"),
    "fraud": N_("security decline"),
    "unknown": N_("unclassified response"),
}
# Severity words (the subject's tags stay English).
_SEVERITY_WORDS: Final = (N_("low"), N_("medium"), N_("high"))


class AckLinkMaker(Protocol):
    """What a renderer needs of the acknowledgement links: one signed URL per alert and recipient.

    :class:`monitor.alerts.delivery.links.AckLinks` is the one in use; the renderers
    name only this shape, so messages never import delivery.
    """

    def url(self, alert_id: str, manager_id: str) -> str:
        """The signed acknowledgement link of ``alert_id`` for the manager ``manager_id``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertMessage:
    """One rendered alert, ready for any channel.

    Attributes:
        alert_id: the alert it renders.
        subject: one line (e-mail subject, console title).
        text: the plain-text body.
        payload: JSON-able dict with the same facts (``schema`` names its version).
        email: the manager's e-mail address, ``None`` if they have none.
        webhook_url: the manager's webhook, ``None`` if they have none.
        idempotency_key: the same on every retry of one delivery
            (``<alert_id>:<channel>``); the worker sets it.
    """

    alert_id: str
    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    webhook_url: str | None = field(default=None, repr=False)  # may carry user:pass@ or a token
    idempotency_key: str = ""

    def for_channel(self, channel: str, *, recipient_id: str | None = None) -> AlertMessage:
        """Return a copy whose ``idempotency_key`` is ``<alert_id>:<channel>``.

        A message to another manager than the alert's own (an escalation) gets
        ``<alert_id>:<channel>:<recipient_id>``, so it is not taken for a repeat of
        the first message.
        """
        key = f"{self.alert_id}:{channel}" + (f":{recipient_id}" if recipient_id else "")
        return replace(self, idempotency_key=key)


def format_amount(amount_minor: int, currency: str, *, locale: str = "en_US") -> str:
    """Format integer minor units as money, e.g. ``13409, "USD"`` → ``"$134.09"``.

    Args:
        amount_minor: amount in minor units of ``currency``.
        currency: ISO 4217 code; its exponent comes from CLDR via Babel (JPY 0, BHD 3).
        locale: CLDR locale of the reader.

    Returns:
        The amount as the reader writes it (``"€1,234.50"``, ``"¥1,234"``).
    """
    exponent = get_currency_precision(currency)
    amount = Decimal(amount_minor).scaleb(-exponent)
    return str(format_currency(amount, currency, locale=locale))


def _local(moment: datetime, t: Translator, pattern: str = "%a %d %b %Y, %H:%M:%S %Z") -> str:
    return local_time(t, moment, pattern)


def _word(t: Translator, words: dict[str, str], key: str) -> str:
    return t.gettext(words[key]) if key in words else key


def _card(event: AlertEvent, t: Translator | None = None) -> str:
    t = t or Translator()
    if event.pan_masked:
        return event.pan_masked
    if event.card_ref and _MASKED_PAN.match(event.card_ref):
        return event.card_ref
    if event.card_ref:
        ref = event.card_ref[:8] + "…" if len(event.card_ref) > 12 else event.card_ref
        return t.gettext("card ref %(ref)s", ref=ref)
    return t.gettext("card unknown")


def _place(event: AlertEvent, t: Translator) -> str:
    parts = [f"{_word(t, _CHANNEL_WORDS, event.channel)} {event.terminal_id}"]
    if event.merchant_name and event.merchant_id:
        parts.append(t.gettext("%(name)s (merchant %(id)s)", name=event.merchant_name,
                               id=event.merchant_id))
    elif event.merchant_name or event.merchant_id:
        parts.append(event.merchant_name or t.gettext("merchant %(id)s", id=event.merchant_id))
    locality = ", ".join(p for p in (event.city, event.region) if p)
    if locality:
        parts.append(locality)
    return ", ".join(parts)


def _result(event: AlertEvent, t: Translator) -> str:
    outcome = _word(t, _OUTCOME_WORDS, event.outcome)
    if event.response_code is None:
        return t.gettext("no response from the issuer (timeout) — %(outcome)s", outcome=outcome)
    return t.gettext("response code %(code)s %(meaning)s — %(outcome)s", code=event.response_code,
                     meaning=t.rule_text(event.response_meaning), outcome=outcome)


def _amount(event: AlertEvent, t: Translator) -> str:
    # English keeps the en_US amounts messages always had; other locales write their own.
    return format_amount(event.amount_minor, event.currency,
                         locale="en_US" if t.locale == "en" else t.locale.replace("-", "_"))


def _event_payload(event: AlertEvent, zone: ZoneInfo, locale: str) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at.isoformat(),
        "occurred_at_local": event.occurred_at.astimezone(zone).isoformat(),
        "channel": event.channel,
        "terminal_id": event.terminal_id,
        "merchant_id": event.merchant_id,
        "merchant_name": event.merchant_name,
        "city": event.city,
        "region": event.region,
        "txn_type": event.txn_type,
        "amount_minor": event.amount_minor,
        "currency": event.currency,
        "amount": format_amount(event.amount_minor, event.currency, locale=locale),
        "status": event.status,
        "response_code": event.response_code,
        "response_meaning": event.response_meaning,
        "outcome": event.outcome,
        "card": _card(event),
    }


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def render(
    alert: Alert,
    events: list[AlertEvent],
    *,
    manager_timezone: str | None = None,
    locale: str | None = None,
    recipient: Manager | None = None,
    ack_url: str | None = None,
    covering_for_away: bool = False,
    covering_unreachable: bool = False,
) -> AlertMessage:
    """Render an alert and its events for the relationship manager (or whoever it escalated to).

    Args:
        alert: the stored alert.
        events: its events, any order (at least one).
        manager_timezone: IANA zone for times; ``None`` uses the recipient's zone;
            an unknown zone falls back to UTC.
        locale: BCP 47 locale of the reader (language, amounts, dates); ``None`` uses
            the recipient's ``locale`` (English when it is not one cardmon speaks).
        recipient: who receives it when it is not the alert's manager (an
            escalation); their address and webhook go on the message, the subject
            says ``ESCALATED``. ``None``: the alert's manager.
        covering_for_away: the recipient is the backup of a manager who is away (not
            an escalation): the message says so instead of ``ESCALATED``.
        covering_unreachable: the recipient is the backup of a manager cardmon could
            not reach (the fallback): the message says so instead of ``ESCALATED``.
        ack_url: the signed acknowledgement link for this recipient
            (:meth:`monitor.alerts.delivery.links.AckLinks.url`), shown at the end of the text
            and as ``payload["ack_url"]``; ``None`` for none.

    Returns:
        An :class:`AlertMessage`; ``idempotency_key`` is left for the caller.

    Raises:
        ValueError: ``events`` is empty.
    """
    if not events:
        raise ValueError(f"alert {alert.alert_id} has no events to render")
    to = recipient or alert.manager
    escalated = to.manager_id != alert.manager.manager_id
    t = reader(to, locale, manager_timezone)
    zone = t.zone
    newest_first = sorted(events, key=lambda e: (e.occurred_at, e.event_id), reverse=True)
    latest = newest_first[0]
    count = len(events)
    amount = _amount(latest, t)
    what = _word(t, _TXN_WORDS, latest.txn_type)
    code = latest.response_code or t.gettext("timeout")
    # "91 Issuer or switch is inoperative"; a timeout's meaning already says "timeout".
    meaning = t.rule_text(latest.response_meaning)
    reason = (f"{latest.response_code} {meaning}" if latest.response_code
              else meaning or t.gettext("timeout"))

    if count == 1:
        headline = t.gettext("%(what)s of %(amount)s failed (%(reason)s)", what=what, amount=amount,
                             reason=reason)
    else:
        headline = t.gettext("%(count)s failed transactions, latest %(what)s of %(amount)s (%(code)s)",
                             count=count, what=what, amount=amount, code=code)
    covering = escalated and (covering_for_away or covering_unreachable)
    flags = f"[{alert.severity.upper()}]" + (
        "[BACKUP]" if covering else "[ESCALATED]" if escalated else "") + (
        "[LATE]" if alert.late else "")
    subject = f"{flags} {alert.customer_name} ({alert.tier}): {headline}"

    lines = [
        t.gettext("Client:").ljust(10) + " " + t.gettext("%(name)s — %(tier)s (client %(id)s)",
                                                   name=alert.customer_name, tier=alert.tier,
                                                   id=alert.customer_id),
        t.gettext("Severity:").ljust(10) + f" {t.gettext(alert.severity)}",
        t.gettext("Action:").ljust(10) + f" {t.rule_text(alert.suggested_action)}",
        "",
        t.gettext("Latest failure") if count > 1 else t.gettext("Failure"),
        "  " + t.gettext("When:").ljust(8) + f" {_local(latest.occurred_at, t)}",
        "  " + t.gettext("Card:").ljust(8) + f" {_card(latest, t)}",
        "  " + t.gettext("Where:").ljust(8) + f" {_place(latest, t)}",
        "  " + t.gettext("What:").ljust(8) + " " + t.gettext("%(what)s of %(amount)s", what=what, amount=amount),
        "  " + t.gettext("Result:").ljust(8) + f" {_result(latest, t)}",
    ]
    if count > 1:
        first = newest_first[-1].occurred_at
        lines += [
            "",
            t.gettext("%(count)s failed transactions between %(first)s and %(last)s, newest first:",
                      count=count, first=_local(first, t, "%H:%M"),
                      last=_local(latest.occurred_at, t, "%H:%M %Z")),
        ]
        for event in newest_first[:_MAX_LISTED]:
            lines.append(
                f"  {_local(event.occurred_at, t, '%H:%M:%S %Z')}  {event.channel:<4} "
                f"{event.terminal_id:<10} "
                f"{_amount(event, t):>14}  "
                f"{event.response_code or '--'} {t.rule_text(event.response_meaning)}  {_card(event, t)}"
            )
        if count > _MAX_LISTED:
            lines.append("  " + t.gettext("… and %(count)s earlier", count=count - _MAX_LISTED))
    lines += [
        "",
        t.gettext("Manager: %(name)s · alert %(id)s", name=alert.manager.name, id=alert.alert_id),
    ]
    if alert.late:
        lines.append(t.gettext("Late: cardmon processed this failure long after it happened; "
                               "it was recorded, and no one was paged."))
    if covering and covering_unreachable:
        lines.append(t.gettext("Sent to you as backup: cardmon cannot reach %(name)s "
                               "through their channels right now.", name=alert.manager.name))
    elif covering:
        lines.append(t.gettext("Routed to you as backup: %(name)s is away.", name=alert.manager.name))
    elif escalated:
        lines.append(t.gettext("Escalated to you: %(name)s has not acknowledged this alert.",
                               name=alert.manager.name))
    text = _scrub("\n".join(lines) + "\n")
    subject = _scrub(subject)

    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "alert_id": alert.alert_id,
        "severity": alert.severity,
        "customer": {
            "customer_id": alert.customer_id,
            "name": alert.customer_name,
            "tier": alert.tier,
        },
        "manager": {"manager_id": alert.manager.manager_id, "name": alert.manager.name},
        "suggested_action": alert.suggested_action,
        "window_start": alert.window_start.isoformat(),
        "window_end": alert.window_end.isoformat(),
        "event_count": count,
        "subject": subject,
        "text": text,
        "events": [_event_payload(e, zone, "en_US") for e in newest_first],
        "locale": t.locale,
    }
    payload = json.loads(_scrub(json.dumps(payload, ensure_ascii=False)))
    payload["recipient"] = {"manager_id": to.manager_id, "name": _scrub(to.name)}
    payload["escalated"] = escalated
    payload["late"] = alert.late
    # The link is added after scrubbing: it is ours, holds no PAN, and must stay intact.
    payload["ack_url"] = ack_url
    if ack_url:
        text += "\n" + t.gettext("Acknowledge: %(url)s", url=ack_url) + "\n" + t.gettext(
            "(opens a confirmation page; the link expires)") + "\n"
        payload["text"] = text
    return AlertMessage(
        alert_id=alert.alert_id,
        subject=subject,
        text=text,
        payload=payload,
        email=to.email,
        webhook_url=to.webhook_url,
    )


def render_delivery(
    store: AlertStore,
    delivery: Delivery,
    *,
    links: AckLinkMaker | None = None,
    default_timezone: str = "UTC",
    locale: str | None = None,
    locale_of: Callable[[str], str | None] | None = None,
) -> AlertMessage:
    """Render the message of one outbox row, for its recipient, with its ack link.

    The recipient is the row's own (an escalation's backup manager or team lead,
    :meth:`AlertStore.delivery_recipient`) or else the alert's manager. Rows of a
    manager channel (``email``, ``webhook``, ``apprise:<n>``) carry an ack link
    signed for that recipient; sink rows (``console``, ``jsonl``...) carry none: a
    file or a console is not a person, and a link there would be a credential
    anyone reading it could use. Synchronous (it reads the store): call it through
    :func:`asyncio.to_thread`.

    Args:
        store: the alert store.
        delivery: the claimed outbox row.
        links: the ack link maker; ``None`` renders without links.
        default_timezone: zone when the recipient has none.
        locale: BCP 47 locale of the reader; ``None``: ``locale_of(recipient ID)``, else
            the stored recipient's (the store keeps no locale: English).
        locale_of: the current registry's locale of a manager ID (``None``: unknown).

    Returns:
        The message, with ``idempotency_key`` ``<alert_id>:<channel>`` (plus
        ``:<recipient_id>`` for a row to another manager).

    Raises:
        LookupError: the alert is not in the store.
        ValueError: the alert has no events.
    """
    alert = store.get_alert(delivery.alert_id)
    if alert is None:
        raise LookupError(f"alert {delivery.alert_id} is not in the store")
    events = store.alert_events(delivery.alert_id)
    recipient = store.delivery_recipient(delivery.delivery_id)
    to = recipient or alert.manager
    ack_url = None
    if links is not None and delivery.channel.partition(":")[0] in _PERSON_CHANNELS:
        ack_url = links.url(alert.alert_id, to.manager_id)
    # A backup covering an away manager (routed at record time), not an escalation step.
    history = store.history(alert.alert_id) if recipient is not None else []
    covering = recipient is not None and any(
        entry.note is not None and entry.note.startswith("routed to backup: away")
        and recipient.manager_id in entry.note for entry in history)
    # The backup told by the fallback (delivery.py) because the manager is unreachable.
    unreachable = recipient is not None and any(
        entry.action == "fallback" and f"told backup {recipient.manager_id}" in (entry.note or "")
        for entry in history)
    if locale is None and locale_of is not None:
        locale = locale_of(to.manager_id)
    message = render(alert, events, manager_timezone=to.timezone or default_timezone,
                     locale=locale, recipient=recipient, ack_url=ack_url,
                     covering_for_away=covering, covering_unreachable=unreachable)
    return message.for_channel(delivery.channel,
                               recipient_id=recipient.manager_id if recipient else None)
