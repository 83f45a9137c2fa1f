"""The recovery follow-up: one short message to a manager when a client's recovery watch is decided.

After a VIP failure alert the recovery watch follows the client's next transactions
of the same kind (:mod:`monitor.alerts.store.follow_ups`). When it is decided, a
manager who opted in (registry ``recovery_follow_up``) gets one message
(``rf-...``), rendered here when the delivery worker sends it:

* recovered: "Ana Silva completed the cash withdrawal at ATM-0042 (another terminal),
  4 minutes after the failure at ATM-0017 (Lisbon)."
* abandoned: "Ana Silva made no successful cash withdrawal in the 30 minutes after the
  failure at ATM-0017 (Lisbon): consider calling them." An alert whose client failed
  several kinds of transaction names every one ("no successful purchase at a card
  terminal or cash withdrawal at an ATM in the 30 minutes after the last failure"), from
  the kinds the watch recorded (``alert_recovery_kinds``).

It names the client (managers see their own clients) and terminals, never a card.
"How long after" counts from the alert's first failure, as the API and
``cardmon_vip_recovery_seconds`` do (:attr:`Recovery.seconds_to_recovery`). The same
facts go into a JSON ``payload`` (schema ``cardmon.recovery.v1``). The text is
in the recipient's language and times in their zone (:mod:`monitor.alerts.messages.local`);
the subject's tag and the payload's data stay English. Every text is PAN-scrubbed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from babel.lists import format_list

from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.messages.local import local_time, reader
from monitor.domain import Alert, AlertEvent, Delivery, Manager
from monitor.i18n import N_, Translator
from monitor.ids import follow_up_alert_id, follow_up_id_for
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from monitor.alerts.store import AlertStore, Recovery

__all__ = ["PAYLOAD_SCHEMA", "after_words", "failed_city", "kinds_in_order", "kinds_words",
           "render_follow_up", "render_follow_up_delivery", "transaction_words"]

#: Version of the follow-up ``payload`` shape.
PAYLOAD_SCHEMA: Final = "cardmon.recovery.v1"
_TXN_WORDS: Final = {
    "purchase": N_("purchase"),
    "withdrawal": N_("cash withdrawal"),
    "balance_inquiry": N_("balance inquiry"),
    "transfer": N_("transfer"),
    "refund": N_("refund"),
    "reversal": N_("reversal"),
}
# A kind of transaction (type at a channel), when an alert holds several.
_KIND_WORDS: Final = {
    "ATM": N_("%(txn)s at an ATM"),
    "POS": N_("%(txn)s at a card terminal"),
    "ECOM": N_("online %(txn)s"),
}


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def transaction_words(txn_type: str, t: Translator) -> str:
    """The transaction type for people, in the reader's language ("cash withdrawal")."""
    word = _TXN_WORDS.get(txn_type)
    return t.gettext(word) if word else txn_type.replace("_", " ")


def kinds_in_order(
        kinds: Sequence[tuple[str, str, str, datetime, str]]) -> list[tuple[str, str]]:
    """The ``(channel, txn_type)`` of an alert's watched kinds, in the order they first failed.

    Args:
        kinds: the store's rows of one alert (``recovery_kinds``: alert ID, channel,
            type, first failure, its terminal).
    """
    return [(channel, txn_type) for _id, channel, txn_type, _at, _terminal
            in sorted(kinds, key=lambda kind: (kind[3], kind[1], kind[2]))]


def kinds_words(kinds: Sequence[tuple[str, str]], t: Translator) -> str:
    """Several kinds of transaction for people, joined with "or" in the reader's language.

    Args:
        kinds: ``(channel, txn_type)`` pairs (``("POS", "purchase")``), in the order to name
            them; a repeated pair is named once.

    Returns:
        "purchase at a card terminal or cash withdrawal at an ATM" (Babel's CLDR list
        pattern: "a, b, or c" in English, "a, b ou c" in French).
    """
    words: list[str] = []
    for channel, txn_type in kinds:
        pattern = _KIND_WORDS.get(channel)
        txn = transaction_words(txn_type, t)
        word = t.gettext(pattern, txn=txn) if pattern else f"{txn} ({channel})"
        if word not in words:
            words.append(word)
    return format_list(words, style="or", locale=t.locale.replace("-", "_"))


def after_words(seconds: float, t: Translator) -> str:
    """A delay for people: "less than a minute" (under 60 s), "4 minutes", "2 hours" (rounded)."""
    if seconds < 60:
        return t.gettext("less than a minute")
    minutes = round(seconds / 60)
    if minutes < 120:
        return t.ngettext("%(num)s minute", "%(num)s minutes", minutes)
    hours = round(minutes / 60)
    return t.ngettext("%(num)s hour", "%(num)s hours", hours)


def _where(terminal: str, city: str | None) -> str:
    return f"{terminal} ({city})" if city else terminal


def failed_city(events: list[AlertEvent], terminal_id: str) -> str | None:
    """The city the alert's first failure at ``terminal_id`` reported (``None`` if none)."""
    return next((e.city for e in events if e.terminal_id == terminal_id and e.city), None)


def render_follow_up(alert: Alert, recovery: Recovery, manager: Manager, *,
                     city: str | None = None, locale: str | None = None,
                     kinds: Sequence[tuple[str, str]] = ()) -> AlertMessage:
    """Render the follow-up of a decided recovery watch for its manager.

    Args:
        alert: the alert the watch belongs to.
        recovery: its decided watch (``recovered`` or ``abandoned``).
        manager: the recipient (times in their zone, text in their language).
        city: the failed terminal's city, if known.
        locale: the reader's BCP 47 locale; ``None``: the manager's.
        kinds: every kind that failed in the alert, ``(channel, txn_type)`` in the order
            they first failed (the store's ``recovery_kinds``); an abandoned watch of
            more than one kind names them all. Empty: the watch's first failure's kind.

    Returns:
        The message; its ``alert_id`` is the follow-up's ID (``rf-...``).

    Raises:
        ValueError: the watch is still ``watching``.
    """
    if recovery.status == "watching":
        raise ValueError(f"the recovery watch of {alert.alert_id} is not decided")
    t = reader(manager, locale)
    name = alert.customer_name
    txn = transaction_words(recovery.completed_txn_type, t)
    failed = _where(recovery.reference_terminal_id, city)
    if recovery.status == "recovered":
        assert recovery.recovered_at is not None
        after = after_words(max(0.0, recovery.seconds_to_recovery or 0.0), t)
        if recovery.same_terminal:
            body = t.gettext("%(name)s completed the %(txn)s at %(terminal)s, the same terminal, "
                             "%(after)s after the failure.", name=name, txn=txn,
                             terminal=failed, after=after)
        else:
            body = t.gettext("%(name)s completed the %(txn)s at %(terminal)s (another terminal), "
                             "%(after)s after the failure at %(failed)s.", name=name, txn=txn,
                             terminal=recovery.terminal_id or "?", after=after, failed=failed)
        subject = "[RECOVERED] " + t.gettext("%(name)s completed the %(txn)s", name=name, txn=txn)
        when = t.gettext("Completed at %(when)s.",
                         when=local_time(t, recovery.recovered_at, "%H:%M %Z"))
    elif len(set(kinds)) > 1:
        window = after_words((recovery.window_ends_at - recovery.last_failed_at).total_seconds(), t)
        txn = kinds_words(kinds, t)
        body = t.gettext("%(name)s made no successful %(txn)s in the %(window)s after the last "
                         "failure (the first was at %(terminal)s): consider calling them.",
                         name=name, txn=txn, window=window, terminal=failed)
        subject = "[NO RECOVERY] " + t.gettext("%(name)s: no successful %(txn)s after the failures",
                                               name=name, txn=txn)
        when = t.gettext("Watched until %(when)s.",
                         when=local_time(t, recovery.window_ends_at, "%H:%M %Z"))
    else:
        window = after_words((recovery.window_ends_at - recovery.last_failed_at).total_seconds(), t)
        body = t.gettext("%(name)s made no successful %(txn)s in the %(window)s after the failure "
                         "at %(terminal)s: consider calling them.", name=name, txn=txn,
                         window=window, terminal=failed)
        subject = "[NO RECOVERY] " + t.gettext("%(name)s: no successful %(txn)s after the failure",
                                               name=name, txn=txn)
        when = t.gettext("Watched until %(when)s.",
                         when=local_time(t, recovery.window_ends_at, "%H:%M %Z"))
    lines = [t.gettext("Dear %(name)s,", name=manager.name), "", body, when, "",
             t.gettext("Alert %(id)s, first failure %(when)s.", id=alert.alert_id,
                       when=local_time(t, recovery.first_failed_at, "%a %d %b %H:%M %Z"))]
    text = _scrub("\n".join(lines) + "\n")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "alert_id": alert.alert_id,
        "result": recovery.status,
        "customer_id": alert.customer_id,
        "customer_name": name,
        "channel": recovery.channel,
        "txn_type": recovery.txn_type,
        "recovery_channel": recovery.recovery_channel,
        "recovery_txn_type": recovery.recovery_txn_type,
        "failed_terminal_id": recovery.failed_terminal_id,
        "failed_kinds": [{"channel": channel, "txn_type": txn_type}
                         for channel, txn_type in dict.fromkeys(kinds)
                         or [(recovery.channel, recovery.txn_type)]],
        "first_failed_at": recovery.first_failed_at.isoformat(),
        "last_failed_at": recovery.last_failed_at.isoformat(),
        "window_ends_at": recovery.window_ends_at.isoformat(),
        "recovered_at": recovery.recovered_at.isoformat() if recovery.recovered_at else None,
        "recovery_terminal_id": recovery.terminal_id,
        "same_terminal": recovery.same_terminal,
        "seconds_to_recovery": recovery.seconds_to_recovery,
        "manager": {"manager_id": manager.manager_id, "name": manager.name},
        "subject": _scrub(subject),
        "text": text,
        "locale": t.locale,
    }
    return AlertMessage(
        alert_id=follow_up_id_for(alert.alert_id), subject=_scrub(subject), text=text,
        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
        email=manager.email, webhook_url=manager.webhook_url,
    )


def render_follow_up_delivery(store: AlertStore, delivery: Delivery, *,
                              locale_of: Callable[[str], str | None] | None = None) -> AlertMessage:
    """Render the message of a follow-up's outbox row (synchronous: use a thread).

    A sink's row (no recipient of its own) is rendered for the alert's manager.
    ``locale_of`` gives the current registry's locale of a manager ID (the store keeps none).

    Raises:
        LookupError: the follow-up's alert or recovery watch is not in the store.
    """
    alert_id = follow_up_alert_id(delivery.alert_id)
    alert = store.get_alert(alert_id)
    recovery = store.recovery_of(alert_id)
    if alert is None or recovery is None:
        raise LookupError(f"recovery follow-up {delivery.alert_id} is not in the store")
    recipient = store.delivery_recipient(delivery.delivery_id) or alert.manager
    city = failed_city(store.alert_events(alert_id), recovery.reference_terminal_id)
    kinds = kinds_in_order(store.recovery_kinds([alert_id]))
    message = render_follow_up(alert, recovery, recipient, city=city, kinds=kinds,
                               locale=locale_of(recipient.manager_id) if locale_of else None)
    return message.for_channel(delivery.channel)
