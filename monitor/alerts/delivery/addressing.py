"""What an outbox row says and where it goes: its message, its recipient, its channel.

The delivery worker (:mod:`monitor.alerts.delivery.worker`) asks :class:`Addressing`
for each row it claimed:

- the message, rendered *now* by the renderer of the row's kind (one per message
  kind, :mod:`monitor.alerts.messages`): a daily digest (``dg-...``), a rate-cap
  summary (``sm-...``), an incident notice (``ic-...``), a recovery follow-up
  (``rf-...``) or an alert, with a signed
  acknowledgement link for a person's channel, in the language of the recipient's
  ``locale`` as the current registry knows it (the store keeps no locale; a manager
  no longer in the registry reads English);
- the recipient: the row's own (an escalation, a backup) or the alert's manager, as
  the current registry knows them (it holds the Apprise URLs; the store keeps none);
- the channel: a channel of the map by name (``email``, ``webhook``, ``console``,
  ``jsonl``, ``alertmanager``), or a route key (``apprise:0``) whose kind names a
  :class:`RoutedChannel` bound to the recipient's target
  (:func:`monitor.alerts.routing.apprise_target`), looked up at send time.

Each reads the store: the calls run in a thread (:func:`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from monitor.alerts.delivery.channels import Channel
from monitor.alerts.delivery.fallback import ManagerLookup
from monitor.alerts.messages.alert import AckLinkMaker, AlertMessage, render_delivery
from monitor.alerts.messages.digest import render_digest_delivery
from monitor.alerts.messages.incident_notice import render_notice_delivery
from monitor.alerts.messages.recovery import render_follow_up_delivery
from monitor.alerts.messages.summary import render_summary_delivery
from monitor.alerts.routing import apprise_target, channel_kind
from monitor.alerts.store import AlertStore
from monitor.domain import Alert, Delivery, Manager
from monitor.ids import is_digest_id, is_follow_up_id, is_notice_id, is_summary_id

__all__ = ["Addressing", "RoutedChannel"]


@runtime_checkable
class RoutedChannel(Protocol):
    """A channel kind whose target comes from the manager (``apprise``)."""

    def to(self, target: str) -> Channel:
        """The channel bound to one target (a URL; never logged)."""
        ...


class Addressing:
    """Renders an outbox row's message and finds its recipient and channel.

    Args:
        store: the alert store the rows and what they render come from.
        channels: channel name (``email``, ``webhook``, ``apprise``...) → channel.
        managers: the current registry's managers; ``None``: the store's snapshots only.
        links: signs the acknowledgement links of messages to people; ``None``: no link.
        default_timezone: zone for managers whose zone is unknown.
    """

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        *,
        managers: ManagerLookup | None = None,
        links: AckLinkMaker | None = None,
        default_timezone: str = "UTC",
    ) -> None:
        self._store = store
        self._channels = channels  # <channel name: channel>
        self._managers = managers
        self._links = links
        self._default_timezone = default_timezone

    def configured(self, delivery: Delivery) -> bool:
        """Whether a channel of the row's name or kind is configured."""
        kind = channel_kind(delivery.channel)
        return delivery.channel in self._channels or kind in self._channels

    async def message(
        self, delivery: Delivery, *, with_link: bool = True
    ) -> tuple[Alert | None, AlertMessage]:
        """The row's message (and its alert; ``None`` for a digest, summary, notice or follow-up).

        Raises:
            LookupError: what the row names is not in the store.
        """
        links = self._links if with_link else None
        locale_of = self._locale_of
        if is_digest_id(delivery.alert_id):  # a manager's daily digest (digest.py): no alert
            return None, await asyncio.to_thread(render_digest_delivery, self._store, delivery,
                                                 locale_of=locale_of)
        if is_summary_id(delivery.alert_id):  # capped alerts of one manager (ratelimit.py)
            return None, await asyncio.to_thread(
                render_summary_delivery, self._store, delivery, links=links, locale_of=locale_of)
        if is_notice_id(delivery.alert_id):  # one message per manager per incident (incidents/)
            return None, await asyncio.to_thread(
                render_notice_delivery, self._store, delivery, links=links, locale_of=locale_of)
        if is_follow_up_id(delivery.alert_id):  # a decided recovery watch (messages/recovery.py)
            return None, await asyncio.to_thread(render_follow_up_delivery, self._store, delivery,
                                                 locale_of=locale_of)

        def load() -> tuple[Alert, AlertMessage]:  # one trip to a thread, not two
            alert = self._store.get_alert(delivery.alert_id)
            if alert is None:
                raise LookupError(f"alert {delivery.alert_id} is not in the store")
            return alert, render_delivery(self._store, delivery, links=links,
                                          default_timezone=self._default_timezone,
                                          locale_of=locale_of)

        found, message = await asyncio.to_thread(load)
        return found, message

    def _locale_of(self, manager_id: str) -> str | None:
        """The locale the current registry gives ``manager_id`` (``None``: unknown manager)."""
        current = self._managers(manager_id) if self._managers is not None else None
        return current.locale if current is not None else None

    async def recipient(self, delivery: Delivery, alert: Alert | None) -> Manager | None:
        """Who the row goes to, as the current registry knows them; ``None`` for a sink's row.

        An escalation (or backup) row names its recipient; any other row goes to the
        alert's manager. The registry's current entry holds the Apprise URLs and the
        backup (the store keeps neither). ``None``: a sink's row of a digest or notice.
        """
        snapshot = await asyncio.to_thread(self._store.delivery_recipient, delivery.delivery_id)
        snapshot = snapshot or (alert.manager if alert is not None else None)
        if snapshot is None:
            return None
        current = self._managers(snapshot.manager_id) if self._managers is not None else None
        return current or snapshot

    async def channel(self, delivery: Delivery, alert: Alert | None) -> Channel:
        """The channel that carries the row, bound to its recipient for a route key.

        Raises:
            LookupError: no channel of that name or kind is configured, or the row
                has no recipient.
            TypeError: a route key names a kind that takes no per-manager target.
        """
        channel = self._channels.get(delivery.channel)
        if channel is not None:
            return channel
        kind = channel_kind(delivery.channel)
        base = self._channels.get(kind)
        if base is None or kind == delivery.channel:
            raise LookupError(f"no channel named {kind!r} is configured")
        if not isinstance(base, RoutedChannel):
            raise TypeError(f"channel {kind!r} takes no per-manager target")
        recipient = await self.recipient(delivery, alert)
        if recipient is None:
            raise LookupError(f"delivery {delivery.delivery_id} has no recipient")
        return base.to(apprise_target(recipient, delivery.channel))
