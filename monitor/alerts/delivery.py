"""The delivery worker: sends what the outbox holds, with retries that survive restarts.

One pass (:meth:`DeliveryWorker.deliver_due`), step by step:

1. claim the pending outbox rows that are due (the store leases them for
   ``lease_seconds``, so a concurrent pass or instance cannot send them too); the
   leases are renewed every third of that while the pass holds them, so a slow send
   keeps its row and a killed worker's rows are due again within one lease;
2. for each, load the alert and its events *now* (so events added since the alert
   was raised are in the message), render it and send it through its channel,
   bounded by ``send_timeout`` seconds;
3. accepted → ``mark_sent``; refused, with attempts left → ``mark_retry`` with the
   next attempt time from ``tenacity``'s exponential backoff with jitter; refused
   on the last attempt → the alert goes to the fallback channel (if one is
   configured: the operations mailbox, a JSON Lines file...) and then
   ``mark_failed`` records the row as failed with its last error and the fallback's
   outcome. The row stays pending until then, so a crash between the two only
   repeats the last attempt: an alert is never dropped silently.

A row's channel is a channel name of the map (``email``, ``webhook``, ``console``,
``jsonl``, ``alertmanager``) or a route key (``apprise:0``): its kind (``apprise``)
names the channel, whose ``to(target)`` binds it to the manager's target, looked up
at send time (:func:`monitor.alerts.routing.apprise_target`). Metrics see the kind
only, never a target.

The retry schedule lives in the outbox, so a restart resumes it. What a crash
(SIGKILL, power loss) does, by where it lands:

* before a row is claimed, or while its send is in flight and the receiver has not
  answered: the row is due again when its lease ends (at most ``lease_seconds``
  after the crash) and is sent then: nothing is lost, and the receiver accepted
  nothing the first time;
* between the receiver's acceptance (HTTP 2xx, SMTP 250 after DATA) and the commit
  of ``mark_sent``: the row is sent again after the lease. No sender can close this
  window — the acceptance and our commit are two systems — so it is kept short (the
  commit follows the answer at once) and the resend carries the same
  ``Idempotency-Key`` / ``Message-ID``, by which the receiver recognises it.
  Delivery is at-least-once; exactly-once needs the receiver's deduplication.

An alert store outage (:func:`monitor.alerts._db.is_transient`) costs time, never a
message: a failing pass is tried again after a pause doubling up to 30 s; a send the
channel accepted is recorded once the store is back (retried for up to 10 minutes,
so the row is not sent again); a message that could not be rendered because the
store failed counts no attempt and is due again when its lease ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, Protocol, runtime_checkable

import tenacity

from monitor.alerts._db import is_transient
from monitor.alerts.channels import Channel
from monitor.alerts.digest import render_digest_delivery
from monitor.alerts.model import Alert, Delivery, Manager
from monitor.alerts.ratelimit import is_summary_id, render_summary_delivery
from monitor.alerts.render import AlertMessage, render_delivery
from monitor.alerts.routing import apprise_target, channel_kind
from monitor.alerts.store import AlertStore, is_digest_id
from monitor.incidents.model import is_notice_id
from monitor.incidents.render import render_notice_delivery
from monitor.secrets import redact_urls

if TYPE_CHECKING:
    from monitor.alerts.tokens import AckLinks

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DeliveryResult",
    "DeliveryWorker",
    "ManagerLookup",
    "ResultCallback",
    "RoutedChannel",
]

log = logging.getLogger(__name__)

#: What one attempt came to (the ``status`` label of ``cardmon_alerts_total``).
DeliveryResult = Literal["sent", "retry", "failed"]
#: ``on_result(channel, status, seconds)``: called once per attempt; ``channel`` is the
#: channel kind (``apprise``, never ``apprise:0``) or ``fallback``; ``seconds`` is how
#: long the attempt took.
ResultCallback = Callable[[str, DeliveryResult, float], None]
#: ``managers(manager_id)``: the manager as the registry knows them now, or ``None``.
ManagerLookup = Callable[[str], Manager | None]
#: The channel label of sends to the fallback channel.
FALLBACK: Final = "fallback"


@runtime_checkable
class RoutedChannel(Protocol):
    """A channel kind whose target comes from the manager (``apprise``)."""

    def to(self, target: str) -> Channel:
        """The channel bound to one target (a URL; never logged)."""
        ...

# Rows claimed per pass; a full batch means more may be due, so the next pass starts at once.
_BATCH_SIZE: Final = 50
#: Longest pause between two tries while the alert store is unavailable (seconds).
_STORE_PAUSE_MAX_SECONDS: Final = 30.0
#: How long a send's outcome is retried into an unavailable store before giving up (the
#: row is then sent again after its lease: at-least-once, same Idempotency-Key).
_MARK_RETRY_SECONDS: Final = 600.0
#: Seconds a claim holds a row before it must be renewed. Short, so the rows of a
#: worker that was killed mid-send are due again seconds after a restart; renewed every
#: third of it, so two missed renewals in a row (a stalled loop) still keep the row.
DEFAULT_LEASE_SECONDS: Final = 15.0


class DeliveryWorker:
    """Sends due outbox rows through their channels.

    Args:
        store: the alert store holding the outbox.
        channels: channel name (``email``, ``webhook``, ``console``, ``jsonl``) → channel.
            A row whose channel is missing here fails its attempts like any error.
        max_attempts: attempts per delivery before it is ``failed`` (>= 1).
        backoff_initial: first retry delay in seconds (before jitter).
        backoff_max: longest retry delay in seconds.
        backoff_jitter: random extra delay, up to this many seconds; ``None`` uses
            ``backoff_initial``.
        poll_interval: seconds between passes when nothing was due.
        send_timeout: seconds one send may take before it counts as failed.
        default_timezone: zone for managers whose zone is unknown.
        on_result: called after each attempt (metrics).
        managers: the current registry's managers, to find the target of a route key
            (``apprise:0``); the alert's manager snapshot is used when ``None`` or
            when the registry no longer knows the manager.
        fallback: where an alert goes after the last failed attempt on any channel;
            ``None`` = nowhere (the row is still marked failed, loudly).
        links: signs the acknowledgement link put in messages to people
            (:func:`monitor.alerts.render.render_delivery`); ``None`` = no link.
        lease_seconds: how long a claim holds a row without renewal, in seconds: the
            longest a killed worker's rows wait before another pass sends them.
    """

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        *,
        max_attempts: int = 5,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        backoff_jitter: float | None = None,
        poll_interval: float = 0.5,
        send_timeout: float = 30.0,
        default_timezone: str = "UTC",
        on_result: ResultCallback | None = None,
        managers: ManagerLookup | None = None,
        fallback: Channel | None = None,
        links: AckLinks | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._store = store
        self._channels = dict(channels)  # <channel name: channel>
        self._max_attempts = max_attempts
        self._wait = tenacity.wait_exponential_jitter(
            max=backoff_max,
            jitter=backoff_initial if backoff_jitter is None else backoff_jitter,
            **_multiplier(backoff_initial),
        )
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()  # set when new alerts are committed
        self._send_timeout = send_timeout
        self._lease_seconds = lease_seconds
        self._default_timezone = default_timezone
        self._on_result = on_result
        self._managers = managers
        self._fallback = fallback
        self._links = links

    def __repr__(self) -> str:
        return (
            f"DeliveryWorker(channels={sorted(self._channels)}, "
            f"max_attempts={self._max_attempts}, fallback={self._fallback!r})"
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (exponential, jittered)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempts
        return float(self._wait(state))

    async def run(self, stop_event: asyncio.Event) -> None:
        """Deliver until ``stop_event`` is set; a failing pass is logged, never fatal.

        Passes that fail (the alert store down, say) are tried again after a pause
        that doubles from the poll interval up to 30 s, so an outage is ridden out
        without busy-looping; new alerts (:meth:`wake`) end the pause early.
        """
        pause = 0.0  # seconds before the next pass after a failed one; 0 after a good one
        while not stop_event.is_set():
            try:
                claimed, _ = await self._pass()
                pause = 0.0
            except Exception as error:
                pause = min(max(pause * 2, self._poll_interval), _STORE_PAUSE_MAX_SECONDS)
                if is_transient(error):  # one line: an outage is not a bug
                    log.warning("delivery pass failed, the alert store is unavailable (%s); "
                                "next pass in %.1f s", _describe(error), pause)
                else:
                    log.exception("delivery pass failed; next pass in %.1f s", pause)
                claimed = 0
            if claimed >= _BATCH_SIZE:
                continue
            # Sleep until the poll interval ends, the store has news (wake) or we must stop.
            waits = [asyncio.ensure_future(stop_event.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, timeout=pause or self._poll_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
            self._wake.clear()

    def wake(self) -> None:
        """Start the next pass now instead of at the end of the poll interval.

        Called after new alerts are committed, so a manager hears of a failure in
        milliseconds rather than up to one poll interval later.
        """
        self._wake.set()

    async def deliver_due(self) -> int:
        """Make one pass over the due rows.

        Returns:
            How many deliveries were sent in this pass.
        """
        _, sent = await self._pass()
        return sent

    async def _pass(self) -> tuple[int, int]:
        # Returns (rows claimed, rows sent).
        now = datetime.now(UTC)
        due = await asyncio.to_thread(
            self._store.claim_due, now, _BATCH_SIZE, lease_seconds=self._lease_seconds,
        )
        if not due:
            return 0, 0
        lease_end = now + timedelta(seconds=self._lease_seconds)  # what claim_due wrote
        held = {delivery.delivery_id: lease_end for delivery in due}  # <delivery_id: lease end>
        renewal = asyncio.create_task(self._renew(held), name="cardmon-delivery-leases")
        try:
            results = await asyncio.gather(*(self._attempt(delivery, held) for delivery in due))
        finally:
            renewal.cancel()
            with suppress(asyncio.CancelledError):
                await renewal
        return len(due), results.count("sent")

    async def _renew(self, held: dict[int, datetime]) -> None:
        """Extend the leases of ``held`` every third of a lease until cancelled."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            if not held:
                continue
            leases = dict(held)
            until = datetime.now(UTC) + timedelta(seconds=self._lease_seconds)
            try:
                renewed = set(await asyncio.to_thread(self._store.renew_leases, leases, until))
            except Exception as error:
                if not is_transient(error):
                    log.exception("renewing %d delivery lease(s) failed; retrying", len(leases))
                else:  # one line: an outage is not a bug
                    log.warning("renewing %d delivery lease(s) failed, the alert store is "
                                "unavailable (%s); retrying", len(leases), _describe(error))
                continue
            for delivery_id in leases:
                if delivery_id not in held:
                    continue  # its attempt ended meanwhile
                if delivery_id in renewed:
                    held[delivery_id] = until
                else:  # marked meanwhile, or the lease ran out and another pass took it
                    del held[delivery_id]
                    log.debug("delivery %d: lease not renewed", delivery_id)

    async def _attempt(self, delivery: Delivery, held: dict[int, datetime]) -> DeliveryResult:
        started = time.monotonic()
        status: DeliveryResult
        try:
            try:
                await asyncio.wait_for(self._send(delivery), timeout=self._send_timeout)
            except Exception as error:  # noqa: BLE001
                if is_transient(error):
                    # The store, not the channel, failed (rendering reads it): nothing was
                    # sent and no attempt is counted; the row is due again when its lease ends.
                    log.warning("alert %s via %s: not sent, the alert store is unavailable (%s)",
                                delivery.alert_id, delivery.channel, _describe(error))
                    status = "retry"
                else:  # any error of any channel is recorded on the row and retried, never lost
                    status = await self._record_failure(delivery, _describe(error))
            else:
                # At once: between the channel's acceptance and this commit, a crash resends.
                await self._durably(f"alert {delivery.alert_id} sent via {delivery.channel}",
                                    self._store.mark_sent, delivery.delivery_id, datetime.now(UTC))
                status = "sent"
        finally:
            held.pop(delivery.delivery_id, None)
        elapsed = time.monotonic() - started
        log.info(
            "alert %s via %s: %s (attempt %d, %.3f s)",
            delivery.alert_id, delivery.channel, status, delivery.attempts + 1, elapsed,
        )
        self._report(channel_kind(delivery.channel), status, elapsed)
        return status

    async def _durably(self, what: str, mark: Callable[..., object], *args: object) -> None:
        """Record what a channel did (``mark(*args)`` in a thread), riding out a store outage.

        A mark that is lost would make the row be sent again (a duplicate for the
        manager) or lose an attempt, so transient store errors are retried with a pause
        doubling up to 30 s, for up to :data:`_MARK_RETRY_SECONDS`; the shutdown's drain
        bound cancels it sooner. Anything else is raised.
        """
        pause = 0.5
        deadline = time.monotonic() + _MARK_RETRY_SECONDS
        while True:
            try:
                await asyncio.to_thread(mark, *args)
                return
            except Exception as error:
                if not is_transient(error) or time.monotonic() + pause > deadline:
                    raise
                log.warning("%s: not recorded yet, the alert store is unavailable (%s); "
                            "trying again in %.1f s", what, _describe(error), pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _STORE_PAUSE_MAX_SECONDS)

    def _report(self, channel: str, status: DeliveryResult, seconds: float) -> None:
        if self._on_result is not None:
            self._on_result(channel, status, seconds)

    async def _message(
        self, delivery: Delivery, *, with_link: bool = True
    ) -> tuple[Alert | None, AlertMessage]:
        if is_digest_id(delivery.alert_id):  # a manager's daily digest (digest.py): no alert
            return None, await asyncio.to_thread(render_digest_delivery, self._store, delivery)
        if is_summary_id(delivery.alert_id):  # capped alerts of one manager (ratelimit.py)
            return None, await asyncio.to_thread(
                render_summary_delivery, self._store, delivery,
                links=self._links if with_link else None)
        if is_notice_id(delivery.alert_id):  # one message per manager per incident (incidents/)
            return None, await asyncio.to_thread(
                render_notice_delivery, self._store, delivery,
                links=self._links if with_link else None)
        alert = await asyncio.to_thread(self._store.get_alert, delivery.alert_id)
        if alert is None:
            raise LookupError(f"alert {delivery.alert_id} is not in the store")
        message = await asyncio.to_thread(
            render_delivery, self._store, delivery, links=self._links if with_link else None,
            default_timezone=self._default_timezone)
        return alert, message

    async def _recipient(self, delivery: Delivery, alert: Alert | None) -> Manager:
        # An escalation row names its recipient; any other row goes to the alert's manager.
        # The registry's current entry holds the Apprise URLs (the store keeps none).
        snapshot = await asyncio.to_thread(self._store.delivery_recipient, delivery.delivery_id)
        snapshot = snapshot or (alert.manager if alert is not None else None)
        if snapshot is None:
            raise LookupError(f"delivery {delivery.delivery_id} has no recipient")
        current = self._managers(snapshot.manager_id) if self._managers is not None else None
        return current or snapshot

    async def _channel(self, delivery: Delivery, alert: Alert | None) -> Channel:
        channel = self._channels.get(delivery.channel)
        if channel is not None:
            return channel
        kind = channel_kind(delivery.channel)
        base = self._channels.get(kind)
        if base is None or kind == delivery.channel:
            raise LookupError(f"no channel named {kind!r} is configured")
        if not isinstance(base, RoutedChannel):
            raise TypeError(f"channel {kind!r} takes no per-manager target")
        return base.to(apprise_target(await self._recipient(delivery, alert), delivery.channel))

    async def _send(self, delivery: Delivery) -> None:
        kind = channel_kind(delivery.channel)
        if delivery.channel not in self._channels and kind not in self._channels:
            raise LookupError(f"no channel named {kind!r} is configured")
        alert, message = await self._message(delivery)
        await (await self._channel(delivery, alert)).send(message)

    async def _send_fallback(self, delivery: Delivery, error: str, attempts: int) -> str:
        """Send the alert to the fallback channel; return what happened, for ``last_error``."""
        assert self._fallback is not None
        kind = channel_kind(delivery.channel)
        started = time.monotonic()
        try:
            try:
                # No ack link: it is the manager's credential, and operations reads this.
                alert, message = await self._message(delivery, with_link=False)
                name = alert.manager.name if alert is not None else "the manager"
            except Exception as render_error:  # noqa: BLE001 — the fallback must still go out
                name = "the manager"
                message = AlertMessage(
                    alert_id=delivery.alert_id, subject=f"alert {delivery.alert_id}",
                    text=f"(the alert could not be rendered: {_describe(render_error)})\n")
            note = (f"cardmon could not deliver this alert to {name} via {kind} after "
                    f"{attempts} attempt(s); last error: {error}. Please pass it on.\n\n")
            undelivered = replace(
                message,
                subject=f"[UNDELIVERED via {kind}] {message.subject}",
                text=note + message.text,
                payload={**message.payload,
                         "undelivered": {"channel": kind, "attempts": attempts, "error": error}},
            ).for_channel(f"{FALLBACK}:{delivery.channel}")
            await asyncio.wait_for(self._fallback.send(undelivered), timeout=self._send_timeout)
        except Exception as fallback_error:  # noqa: BLE001 — recorded on the row and logged
            self._report(FALLBACK, "failed", time.monotonic() - started)
            log.error("alert %s: delivery via %s failed and so did the fallback: %s",
                      delivery.alert_id, kind, _describe(fallback_error))
            return f"fallback failed: {_describe(fallback_error)}"
        self._report(FALLBACK, "sent", time.monotonic() - started)
        log.warning("alert %s: delivery via %s failed after %d attempt(s); sent to the fallback",
                    delivery.alert_id, kind, attempts)
        return "sent to the fallback channel"

    async def _record_failure(self, delivery: Delivery, error: str) -> DeliveryResult:
        attempts = delivery.attempts + 1
        if attempts >= self._max_attempts:
            if self._fallback is not None:
                error = f"{error} — {await self._send_fallback(delivery, error, attempts)}"
            else:
                log.error("alert %s: delivery via %s failed after %d attempt(s) and no "
                          "fallback channel is configured", delivery.alert_id,
                          channel_kind(delivery.channel), attempts)
            await self._durably(f"alert {delivery.alert_id} failed via {delivery.channel}",
                                self._store.mark_failed, delivery.delivery_id, error)
            return "failed"
        next_at = datetime.now(UTC) + timedelta(seconds=self.retry_delay(attempts))
        await self._durably(f"alert {delivery.alert_id} retry via {delivery.channel}",
                            self._store.mark_retry, delivery.delivery_id, error, next_at)
        return "retry"


def _describe(error: Exception) -> str:
    # "TimeoutError" alone says more than "TimeoutError: " (its text is often empty).
    # No URL survives: the text goes to the outbox, the API, logs and the fallback mail.
    text = redact_urls(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _multiplier(initial: float) -> dict[str, float]:
    # tenacity 9.2 renamed ``initial`` to ``multiplier`` (and warns on the old name).
    import inspect

    params = inspect.signature(tenacity.wait_exponential_jitter).parameters
    return {"multiplier": initial} if "multiplier" in params else {"initial": initial}
