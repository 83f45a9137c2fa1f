"""The recovery follow-up: one short message to a manager when a client's recovery watch is decided.

After a VIP failure alert the recovery watch follows the client's next transactions
of the same kind (:mod:`monitor.alerts.store.follow_ups`). When it is decided, a
manager who opted in (registry ``recovery_follow_up``) gets one message
(``rf-...``), rendered here when the delivery worker sends it:

* recovered: "Ana Silva completed the cash withdrawal at ATM-0042 (another terminal),
  4 minutes after the failure at ATM-0017 (Lisbon)."
* abandoned: "Ana Silva made no successful cash withdrawal in the 30 minutes after the
  failure at ATM-0017 (Lisbon): consider calling them."

It names the client (managers see their own clients) and terminals, never a card.
The same facts go into a JSON ``payload`` (schema ``cardmon.recovery.v1``). The text is
in the recipient's language and times in their zone (:mod:`monitor.alerts.messages.local`);
the subject's tag and the payload's data stay English. Every text is PAN-scrubbed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.messages.local import local_time, reader
from monitor.domain import Delivery, Manager
from monitor.i18n import N_, Translator
from monitor.ids import follow_up_id_for
from monitor.privacy import scrub_pans

if TYPE_CHECKING:
    from collections.abc import Callable

    from monitor.alerts.store import AlertStore, RecoveryWatch

__all__ = ["PAYLOAD_SCHEMA", "after_words", "render_follow_up", "render_follow_up_delivery",
           "transaction_words"]

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


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def transaction_words(txn_type: str, t: Translator) -> str:
    """The transaction type for people, in the reader's language ("cash withdrawal")."""
    word = _TXN_WORDS.get(txn_type)
    return t.gettext(word) if word else txn_type.replace("_", " ")


def after_words(seconds: float, t: Translator) -> str:
    """A delay for people: "less than a minute", "4 minutes", "2 hours" (whole units, rounded)."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return t.gettext("less than a minute")
    if minutes < 120:
        return t.ngettext("%(num)s minute", "%(num)s minutes", minutes)
    hours = round(minutes / 60)
    return t.ngettext("%(num)s hour", "%(num)s hours", hours)


def _where(terminal: str, city: str | None) -> str:
    return f"{terminal} ({city})" if city else terminal


def render_follow_up(watch: RecoveryWatch, manager: Manager, *,
                     locale: str | None = None) -> AlertMessage:
    """Render the follow-up of a decided recovery watch for its manager.

    Args:
        watch: the decided watch (``recovered`` or ``abandoned``).
        manager: the recipient (times in their zone, text in their language).
        locale: the reader's BCP 47 locale; ``None``: the manager's.

    Returns:
        The message; its ``alert_id`` is the follow-up's ID (``rf-...``).

    Raises:
        ValueError: the watch is still ``watching``.
    """
    if watch.status == "watching":
        raise ValueError(f"the recovery watch of {watch.alert.alert_id} is not decided")
    t = reader(manager, locale)
    name = watch.alert.customer_name
    txn = transaction_words(watch.txn_type, t)
    failed = _where(watch.failed_terminal_id, watch.failed_city)
    if watch.status == "recovered":
        assert watch.recovered_at is not None
        after = after_words(watch.recovery_seconds or 0.0, t)
        if watch.same_terminal:
            body = t.gettext("%(name)s completed the %(txn)s at %(terminal)s, the same terminal, "
                             "%(after)s after the failure.", name=name, txn=txn,
                             terminal=failed, after=after)
        else:
            body = t.gettext("%(name)s completed the %(txn)s at %(terminal)s (another terminal), "
                             "%(after)s after the failure at %(failed)s.", name=name, txn=txn,
                             terminal=watch.recovery_terminal_id or "?", after=after, failed=failed)
        subject = "[RECOVERED] " + t.gettext("%(name)s completed the %(txn)s", name=name, txn=txn)
        when = t.gettext("Completed at %(when)s.",
                         when=local_time(t, watch.recovered_at, "%H:%M %Z"))
    else:
        window = after_words((watch.deadline - watch.last_failed_at).total_seconds(), t)
        body = t.gettext("%(name)s made no successful %(txn)s in the %(window)s after the failure "
                         "at %(terminal)s: consider calling them.", name=name, txn=txn,
                         window=window, terminal=failed)
        subject = "[NO RECOVERY] " + t.gettext("%(name)s: no successful %(txn)s after the failure",
                                               name=name, txn=txn)
        when = t.gettext("Watched until %(when)s.", when=local_time(t, watch.deadline, "%H:%M %Z"))
    lines = [t.gettext("Dear %(name)s,", name=manager.name), "", body, when, "",
             t.gettext("Alert %(id)s, first failure %(when)s.", id=watch.alert.alert_id,
                       when=local_time(t, watch.first_failed_at, "%a %d %b %H:%M %Z"))]
    text = _scrub("\n".join(lines) + "\n")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "alert_id": watch.alert.alert_id,
        "result": watch.status,
        "customer_id": watch.alert.customer_id,
        "customer_name": name,
        "channel": watch.channel,
        "txn_type": watch.txn_type,
        "failed_terminal_id": watch.failed_terminal_id,
        "first_failed_at": watch.first_failed_at.isoformat(),
        "last_failed_at": watch.last_failed_at.isoformat(),
        "deadline": watch.deadline.isoformat(),
        "recovered_at": watch.recovered_at.isoformat() if watch.recovered_at else None,
        "recovery_terminal_id": watch.recovery_terminal_id,
        "same_terminal": watch.same_terminal if watch.status == "recovered" else None,
        "recovery_seconds": watch.recovery_seconds,
        "manager": {"manager_id": manager.manager_id, "name": manager.name},
        "subject": _scrub(subject),
        "text": text,
        "locale": t.locale,
    }
    return AlertMessage(
        alert_id=follow_up_id_for(watch.alert.alert_id), subject=_scrub(subject), text=text,
        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
        email=manager.email, webhook_url=manager.webhook_url,
    )


def render_follow_up_delivery(store: AlertStore, delivery: Delivery, *,
                              locale_of: Callable[[str], str | None] | None = None) -> AlertMessage:
    """Render the message of a follow-up's outbox row (synchronous: use a thread).

    A sink's row (no recipient of its own) is rendered for the alert's manager.
    ``locale_of`` gives the current registry's locale of a manager ID (the store keeps none).

    Raises:
        LookupError: the follow-up's recovery watch is not in the store.
    """
    watch = store.recovery_watch(delivery.alert_id)
    if watch is None:
        raise LookupError(f"recovery follow-up {delivery.alert_id} is not in the store")
    recipient = store.delivery_recipient(delivery.delivery_id) or watch.alert.manager
    message = render_follow_up(watch, recipient,
                               locale=locale_of(recipient.manager_id) if locale_of else None)
    return message.for_channel(delivery.channel)
