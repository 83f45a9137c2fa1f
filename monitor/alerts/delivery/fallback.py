"""The delivery fallback: who is told when a delivery keeps failing, while its retries go on.

The delivery worker (:mod:`monitor.alerts.delivery.worker`) calls :meth:`DeliveryFallback.tell`
for a row that has been failing ``fallback_after`` seconds (or at the end of its retry
window, if that comes first), once per row:

1. the **backup manager** (``backup_to_registry``): for a row to the client's own
   manager of an alert -- not an escalation's or a backup's row (no chain through the
   registry), not a digest, notice or summary -- the alert is enqueued to the
   manager's ``backup_manager_id`` from the current registry, on the backup's channels
   for its severity, due at once, with retries of its own (the outbox does it in one
   transaction with the history row: :meth:`AlertStore.mark_fallback`);
2. the **operations channel** (``channel``: the operations mailbox, an Apprise URL, a
   JSON Lines file...), for any row: the message with ``[UNDELIVERED via <channel>]``
   and a paragraph saying whom it has not reached, for how long, the last error, and
   until when cardmon keeps trying (or that it gave up), without the ack link.

The row counts as told (``fallback_at``) when every part worked; an operations
channel that failed is tried again at the row's next failure. The row itself keeps
its retries: the manager still gets the message, once, when their channel is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from monitor.alerts.delivery.channels import Channel
from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.routing import channel_kind, channels_for
from monitor.alerts.store import AlertStore
from monitor.domain import Alert, Delivery, Manager, Severity
from monitor.ids import is_digest_id, is_follow_up_id, is_notice_id, is_summary_id
from monitor.secrets import redact_urls

__all__ = [
    "FALLBACK",
    "DeliveryFallback",
    "DeliveryResult",
    "ManagerLookup",
    "ResultCallback",
    "describe_error",
    "duration",
]

log = logging.getLogger("monitor.alerts.delivery.worker")

#: What one attempt came to (the ``status`` label of ``cardmon_alerts_total``).
DeliveryResult = Literal["sent", "retry", "failed"]
#: ``on_result(channel, status, seconds)``: called once per attempt; ``channel`` is the
#: channel kind (``apprise``, never ``apprise:0``) or ``fallback``; ``seconds`` is how
#: long the attempt took.
ResultCallback = Callable[[str, DeliveryResult, float], None]
#: ``managers(manager_id)``: the manager as the registry knows them now, or ``None``.
ManagerLookup = Callable[[str], Manager | None]
#: The channel label of sends to the operations fallback channel.
FALLBACK: Final = "fallback"
#: ``render(delivery)``: the row's alert (``None`` for a digest, notice or summary) and
#: its message without an ack link.
Render = Callable[[Delivery], Awaitable[tuple[Alert | None, AlertMessage]]]
#: ``recipient(delivery, alert)``: whom the row goes to (the registry's entry), if anyone.
Recipient = Callable[[Delivery, Alert | None], Awaitable[Manager | None]]
#: ``record(what, call)``: runs a store write, retried while the store fails transiently.
Record = Callable[[str, Callable[[], int | None]], Awaitable[int | None]]


class DeliveryFallback:
    """Tells the backup manager and/or operations that a delivery is not getting through.

    Args:
        store: the alert store (for the row's recipient and the fallback record).
        channel: the operations channel, or ``None``.
        backup_to_registry: tell the client's manager's backup (registry) too.
        managers: the current registry's managers (for the backup), or ``None``.
        manager_channels: the manager channel kinds configured (the backup's routes).
        retry_for: the rows' retry window in seconds (said in the message).
        send_timeout: seconds the operations send may take.
        on_result: called after each operations send (metrics), channel ``fallback``.
        on_enqueued: called when rows for the backup were enqueued (wakes the worker).
    """

    def __init__(
        self,
        store: AlertStore,
        *,
        channel: Channel | None,
        backup_to_registry: bool,
        managers: ManagerLookup | None,
        manager_channels: Sequence[str],
        retry_for: float,
        send_timeout: float,
        on_result: ResultCallback | None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._channel = channel
        self._backup_to_registry = backup_to_registry
        self._managers = managers
        self._manager_channels = tuple(manager_channels)
        self._retry_for = retry_for
        self._send_timeout = send_timeout
        self._on_result = on_result
        self._on_enqueued = on_enqueued

    def __repr__(self) -> str:
        return f"DeliveryFallback(channel={self._channel!r}, backup={self._backup_to_registry})"

    async def tell(self, delivery: Delivery, error: str, attempts: int, elapsed: float, *,
                   final: bool, render: Render, recipient: Recipient, record: Record) -> str | None:
        """Tell the backup manager and/or operations that a row is not getting through.

        The backup is told only of an alert whose own manager's channel fails (not of an
        escalation's, a backup's, a digest's, a notice's or a summary's row: no chain
        through the registry); operations (``fallback``) of any row.

        Returns:
            What happened, for the row's ``last_error``; ``None`` when no fallback
            applies to the row. The fallback counts as told (``fallback_at``, once per
            row) when every part of it worked; a failed operations channel is tried
            again at the row's next failure.
        """
        kind = channel_kind(delivery.channel)
        own_row = await asyncio.to_thread(self._store.delivery_recipient, delivery.delivery_id) is None
        to_backup = self._backup_to_registry and own_row and not _is_message_id(delivery.alert_id)
        if not to_backup and self._channel is None:
            return None
        alert: Alert | None = None
        try:
            alert, message = await render(delivery)
        except Exception as render_error:  # noqa: BLE001 — the fallback must still go out
            message = AlertMessage(
                alert_id=delivery.alert_id, subject=f"alert {delivery.alert_id}",
                text=f"(the alert could not be rendered: {describe_error(render_error)})\n")
        person = await recipient(delivery, alert)
        who = person.manager_id if person is not None else "its recipient"
        name = person.name if person is not None else "the recipient"
        backup = self._backup_of(person) if to_backup and alert is not None else None
        parts: list[str] = []
        done = True
        if to_backup and alert is not None:
            parts.append(f"told backup {backup.manager_id}" if backup is not None
                         else f"{who} has no backup in the registry")
        if self._channel is not None:
            failure = await self._send_fallback(delivery, message, name=name, error=error,
                                                attempts=attempts, elapsed=elapsed, final=final)
            parts.append("sent to the fallback channel" if failure is None
                         else f"fallback failed: {failure}")
            done = failure is None
        note = (f"not delivered to {who} via {kind} for {duration(elapsed)} "
                f"({attempts} attempt(s)); {'; '.join(parts)}")
        if done or backup is not None:
            added = await record(
                f"recording the fallback of delivery {delivery.delivery_id}",
                lambda: self._store.mark_fallback(
                    delivery.delivery_id, datetime.now(UTC), note, backup=backup,
                    route=self._backup_route, done=done))
            if added and self._on_enqueued is not None:
                self._on_enqueued()  # the backup's rows are due at once
        log.warning("alert %s: %s", delivery.alert_id, note)
        return "; ".join(parts)

    def _backup_route(self, backup: Manager, severity: Severity) -> tuple[Manager, list[str]]:
        # The backup themself, on their channels for the alert's severity.
        return backup, [route.channel for route in channels_for(backup, severity, self._manager_channels)]

    def _backup_of(self, recipient: Manager | None) -> Manager | None:
        if recipient is None or self._managers is None or not recipient.backup_manager_id:
            return None
        backup = self._managers(recipient.backup_manager_id)
        return None if backup is None or backup.manager_id == recipient.manager_id else backup

    async def _send_fallback(self, delivery: Delivery, message: AlertMessage, *, name: str,
                             error: str, attempts: int, elapsed: float, final: bool) -> str | None:
        """Send the operations fallback message; ``None`` when it was accepted, else the error."""
        assert self._channel is not None
        kind = channel_kind(delivery.channel)
        started = time.monotonic()
        if final:
            note = (f"cardmon gave up delivering this message to {name} via {kind} after "
                    f"{duration(elapsed)} ({attempts} attempt(s)); last error: {error}. Please "
                    f"pass it on; `cardmon alerts resend {delivery.alert_id}` sends it again.\n\n")
        else:
            until = (delivery.first_attempt_at or datetime.now(UTC)) + timedelta(seconds=self._retry_for)
            note = (f"cardmon has not been able to deliver this message to {name} via {kind} for "
                    f"{duration(elapsed)} ({attempts} attempt(s)); last error: {error}. It keeps "
                    f"trying until {until:%Y-%m-%d %H:%M} UTC. Please pass it on.\n\n")
        undelivered = replace(
            message,
            subject=f"[UNDELIVERED via {kind}] {message.subject}",
            text=note + message.text,
            payload={**message.payload,
                     "undelivered": {"channel": kind, "attempts": attempts, "error": error,
                                     "seconds": round(elapsed), "final": final}},
        ).for_channel(f"{FALLBACK}:{delivery.channel}")
        try:
            # No ack link: it is the manager's credential, and operations reads this.
            await asyncio.wait_for(self._channel.send(undelivered), timeout=self._send_timeout)
        except Exception as fallback_error:  # noqa: BLE001 — recorded on the row and logged
            self._report("failed", time.monotonic() - started)
            log.error("alert %s: delivery via %s is failing and so did the fallback: %s",
                      delivery.alert_id, kind, describe_error(fallback_error))
            return describe_error(fallback_error)
        self._report("sent", time.monotonic() - started)
        return None

    def _report(self, status: DeliveryResult, seconds: float) -> None:
        if self._on_result is not None:
            self._on_result(FALLBACK, status, seconds)


def _is_message_id(alert_id: str) -> bool:
    # A digest, incident notice, rate-cap summary or recovery follow-up rather than an alert.
    return (is_digest_id(alert_id) or is_notice_id(alert_id) or is_summary_id(alert_id)
            or is_follow_up_id(alert_id))


def describe_error(error: BaseException) -> str:
    """``Type: text`` of an error (``TimeoutError`` alone when its text is empty).

    No URL survives (``scheme://<redacted>``): the text goes to the outbox, the API,
    logs and the fallback message, and a URL may carry credentials or a token.
    """
    text = redact_urls(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def duration(seconds: float) -> str:
    """A duration for people: ``42 s``, ``15 min``, ``6.0 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
