"""The delivery worker: sends what the outbox holds, with retries that outlive outages.

One pass (:meth:`DeliveryWorker.deliver_due`), step by step:

1. claim the pending outbox rows that are due (the store leases them for
   ``lease_seconds``, so a concurrent pass or instance cannot send them too; the
   first claim of a row starts its retry window); the leases are renewed every third
   of that while the pass holds them -- until the last of its sends is recorded --
   so a slow send keeps its row and a killed worker's rows are due again within one
   lease;
2. for each, load the alert and its events *now* (so events added since the alert
   was raised are in the message), render it and send it through its channel,
   bounded by ``send_timeout`` seconds;
3. accepted → ``mark_sent`` (the rows accepted meanwhile share one commit:
   :mod:`monitor.alerts.delivery.sent_marks`); refused → ``mark_retry`` with the next attempt time
   from ``tenacity``'s exponential backoff with jitter, capped at ``backoff_max``,
   for as long as the row's retry window (``retry_for`` seconds from its first
   attempt) lasts: an outage of the mail relay or a webhook shorter than that loses
   nothing, and the message arrives at most ``backoff_max`` after it ends;
4. a row still refused ``fallback_after`` seconds into its window: the fallback is
   told, once per row, while the row keeps its retries (the manager still gets the
   message, once, when their channel is back): the backup manager from the registry
   (``backup_to_registry``: the alert is enqueued to them, on their own channels,
   with its own retries) and/or the operations channel (``fallback``: the operations
   mailbox, an Apprise URL, a JSON Lines file...; :mod:`monitor.alerts.delivery.fallback`).
   ``fallback_at`` records it; the alert's history gets a ``fallback`` row;
5. refused at the end of its window → the fallback is told if it was not yet, and
   ``mark_failed``: the row is ``failed`` (an alert whose deliveries to people all
   failed becomes ``failed``), visible in the API, ``cardmon alerts list --state
   failed`` and ``cardmon_alert_deliveries_failed``; ``cardmon alerts resend``
   puts it back. The row stays pending until then, so a crash in between only
   repeats the last attempt: an alert is never dropped silently.

Recording an outcome (``mark_sent``, ``mark_retry``, the fallback...) is retried for
up to ``mark_retry_seconds`` (10 minutes) when the store fails transiently (a lock
held by another process, a dropped PostgreSQL connection), while the leases of the
pass are still renewed: one slow write never lets another row's lease lapse and be
sent twice.

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

An alert store outage (:func:`monitor.alerts.store.db.is_transient`) costs time, never a
message: a failing pass is tried again after a pause doubling up to 30 s; a send the
channel accepted is recorded once the store is back (retried for up to 10 minutes,
so the row is not sent again); a message that could not be rendered because the
store failed counts no attempt and is due again when its lease ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, TypeVar

import tenacity

from monitor.alerts.delivery.addressing import Addressing
from monitor.alerts.delivery.channels import Channel
from monitor.alerts.delivery.fallback import (
    DeliveryFallback,
    DeliveryResult,
    ManagerLookup,
    ResultCallback,
    describe_error,
    duration,
)
from monitor.alerts.delivery.leases import (
    DEFAULT_LEASE_SECONDS,
    STORE_PAUSE_MAX_SECONDS,
    LeaseRenewal,
    record_durably,
)
from monitor.alerts.delivery.sent_marks import SentMarks
from monitor.alerts.routing import channel_kind
from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import is_transient
from monitor.domain import Delivery

if TYPE_CHECKING:
    from monitor.alerts.delivery.links import AckLinks

__all__ = [
    "DEFAULT_BACKOFF_MAX_SECONDS",
    "DEFAULT_FALLBACK_AFTER_SECONDS",
    "DEFAULT_RETRY_FOR_SECONDS",
    "DeliveryWorker",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Six hours of retries: a mail relay or webhook down for a night shift's first hours
#: loses nothing, and an alert older than that is the digest's business.
DEFAULT_RETRY_FOR_SECONDS: Final = 21_600.0
#: Two minutes between tries at most: a manager hears of a failure at most two minutes
#: after their channel is back.
DEFAULT_BACKOFF_MAX_SECONDS: Final = 120.0
#: Fifteen minutes (the first escalation step's delay): long enough for a relay
#: restart, short enough that someone acts on a VIP failure the same quarter hour.
DEFAULT_FALLBACK_AFTER_SECONDS: Final = 900.0


# Rows claimed per pass; a full batch means more may be due, so the next pass starts at once.
_BATCH_SIZE: Final = 50
#: How long a send's outcome is retried into an unavailable store before giving up (the
#: row is then sent again after its lease: at-least-once, same Idempotency-Key).
_MARK_RETRY_SECONDS: Final = 600.0


class DeliveryWorker:
    """Sends due outbox rows through their channels.

    Args:
        store: the alert store holding the outbox.
        channels: channel name (``email``, ``webhook``, ``console``, ``jsonl``) → channel.
            A row whose channel is missing here fails its attempts like any error.
        retry_for: seconds a row is retried from its first attempt before it is
            ``failed`` (>= 0; 0: one attempt).
        backoff_initial: first retry delay in seconds (before jitter).
        backoff_max: longest retry delay in seconds.
        backoff_jitter: random extra delay, up to this many seconds; ``None`` uses
            ``backoff_initial``.
        poll_interval: seconds between passes when nothing was due.
        send_timeout: seconds one send may take before it counts as failed.
        default_timezone: zone for managers whose zone is unknown.
        on_result: called after each attempt (metrics).
        managers: the current registry's managers, to find the target of a route key
            (``apprise:0``) and a recipient's backup; the alert's manager snapshot is
            used when ``None`` or when the registry no longer knows the manager.
        fallback: the operations channel told about a row still failing after
            ``fallback_after`` seconds (and at its end); ``None`` = none.
        fallback_after: seconds into a row's retry window before the fallback is told.
        backup_to_registry: tell the recipient's backup manager (``backup_manager_id``
            in the registry) too, by enqueuing the alert to them (alerts only; a
            digest, notice or summary goes to the operations channel only).
        manager_channels: the manager channel kinds configured (for the backup's routes).
        links: signs the acknowledgement link put in messages to people
            (:func:`monitor.alerts.messages.alert.render_delivery`); ``None`` = no link.
        lease_seconds: how long a claim holds a row without renewal, in seconds: the
            longest a killed worker's rows wait before another pass sends them.
        mark_retry_seconds: how long recording an outcome is retried on store errors.

    Raises:
        ValueError: a negative ``retry_for`` or ``fallback_after``, or a lease that is
            not positive.
    """

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        *,
        retry_for: float = DEFAULT_RETRY_FOR_SECONDS,
        backoff_initial: float = 1.0,
        backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS,
        backoff_jitter: float | None = None,
        poll_interval: float = 0.5,
        send_timeout: float = 30.0,
        default_timezone: str = "UTC",
        on_result: ResultCallback | None = None,
        managers: ManagerLookup | None = None,
        fallback: Channel | None = None,
        fallback_after: float = DEFAULT_FALLBACK_AFTER_SECONDS,
        backup_to_registry: bool = False,
        manager_channels: Sequence[str] = ("email", "webhook", "apprise"),
        links: AckLinks | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        mark_retry_seconds: float = _MARK_RETRY_SECONDS,
    ) -> None:
        if retry_for < 0 or fallback_after < 0:
            raise ValueError("retry_for and fallback_after must not be negative")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._store = store
        self._channels = dict(channels)  # <channel name: channel>
        self._retry_for = retry_for
        self._wait = tenacity.wait_exponential_jitter(
            max=backoff_max,
            jitter=backoff_initial if backoff_jitter is None else backoff_jitter,
            **_multiplier(backoff_initial),
        )
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()  # set when new alerts are committed
        self._send_timeout = send_timeout
        self._lease_seconds = lease_seconds
        self._mark_retry_seconds = mark_retry_seconds
        self._on_result = on_result
        self._fallback_after = fallback_after
        self._fallback = DeliveryFallback(
            store, channel=fallback, backup_to_registry=backup_to_registry, managers=managers,
            manager_channels=manager_channels, retry_for=retry_for, send_timeout=send_timeout,
            on_result=on_result, on_enqueued=self.wake)
        self._addressing = Addressing(store, self._channels, managers=managers, links=links,
                                      default_timezone=default_timezone)
        self._leases = LeaseRenewal(store, lease_seconds)

    def __repr__(self) -> str:
        return (
            f"DeliveryWorker(channels={sorted(self._channels)}, retry_for={self._retry_for:g}, "
            f"fallback={self._fallback!r})"
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
                pause = min(max(pause * 2, self._poll_interval), STORE_PAUSE_MAX_SECONDS)
                if is_transient(error):  # one line: an outage is not a bug
                    log.warning("delivery pass failed, the alert store is unavailable (%s); "
                                "next pass in %.1f s", describe_error(error), pause)
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
        renewal = asyncio.create_task(self._leases.keep(held), name="cardmon-delivery-leases")
        marks = SentMarks(self._store, self._mark_retry_seconds)
        try:
            # Every attempt runs to its end (its outcome recorded or given up on) before
            # the renewal stops: one failing attempt never lets the others' leases lapse.
            results = await asyncio.gather(*(self._attempt(delivery, held, marks) for delivery in due),
                                           return_exceptions=True)
        finally:
            await marks.close()
            renewal.cancel()
            with suppress(asyncio.CancelledError):
                await renewal
        for delivery, result in zip(due, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation and the like go up
            if isinstance(result, Exception):
                log.error("delivery %d of %s: its outcome could not be recorded (%s); it is "
                          "due again when its lease ends", delivery.delivery_id,
                          delivery.alert_id, describe_error(result))
        return len(due), sum(1 for result in results if result == "sent")

    async def _attempt(self, delivery: Delivery, held: dict[int, datetime],
                       marks: SentMarks) -> DeliveryResult:
        started = time.monotonic()
        status: DeliveryResult
        reason = ""  # why the channel refused, for the log line of a retry or a failure
        try:
            try:
                await asyncio.wait_for(self._send(delivery), timeout=self._send_timeout)
            except Exception as error:  # noqa: BLE001
                if is_transient(error):
                    # The store, not the channel, failed (rendering reads it): nothing was
                    # sent and no attempt is counted; the row is due again when its lease ends.
                    log.warning("alert %s via %s: not sent, the alert store is unavailable (%s)",
                                delivery.alert_id, delivery.channel, describe_error(error))
                    status = "retry"
                else:  # any error of any channel is recorded on the row and retried, never lost
                    reason = describe_error(error)
                    status = await self._record_failure(delivery, reason)
            else:
                # At once: between the channel's acceptance and this commit, a crash resends.
                # The commit is shared with the other rows accepted meanwhile (sent_marks.py).
                await marks.mark(delivery.delivery_id, datetime.now(UTC))
                status = "sent"
        finally:
            held.pop(delivery.delivery_id, None)
        elapsed = time.monotonic() - started
        log.log(
            logging.INFO if status == "sent" or not reason else logging.WARNING,
            "alert %s via %s: %s (attempt %d, %.3f s)%s",
            delivery.alert_id, delivery.channel, status, delivery.attempts + 1, elapsed,
            f": {reason}" if reason else "",
        )
        self._report(channel_kind(delivery.channel), status, elapsed)
        return status

    async def _durably(self, what: str, call: Callable[[], T]) -> T:
        # Through a store outage, for up to mark_retry_seconds (leases.record_durably).
        return await record_durably(what, call, self._mark_retry_seconds)

    def _report(self, channel: str, status: DeliveryResult, seconds: float) -> None:
        if self._on_result is not None:
            self._on_result(channel, status, seconds)

    async def _send(self, delivery: Delivery) -> None:
        if not self._addressing.configured(delivery):
            raise LookupError(f"no channel named {channel_kind(delivery.channel)!r} is configured")
        alert, message = await self._addressing.message(delivery)
        await (await self._addressing.channel(delivery, alert)).send(message)

    # -- failures: retries bounded by time, the fallback after a delay -------------------

    async def _record_failure(self, delivery: Delivery, error: str) -> DeliveryResult:
        now = datetime.now(UTC)
        attempts = delivery.attempts + 1
        first = delivery.first_attempt_at or now
        elapsed = max(0.0, (now - first).total_seconds())
        give_up = elapsed >= self._retry_for
        told = False
        if delivery.fallback_at is None and (give_up or elapsed >= self._fallback_after):
            outcome = await self._fallback.tell(
                delivery, error, attempts, elapsed, final=give_up,
                render=lambda row: self._addressing.message(row, with_link=False),
                recipient=self._addressing.recipient,
                record=self._durably)
            if outcome is not None:
                error, told = f"{error} — {outcome}", True
        if give_up:
            if not told and delivery.fallback_at is None:
                log.error("alert %s: delivery via %s failed for %s (%d attempt(s)) and no "
                          "fallback applies; `cardmon alerts resend %s` re-sends it",
                          delivery.alert_id, channel_kind(delivery.channel), duration(elapsed),
                          attempts, delivery.alert_id)
            await self._durably(f"alert {delivery.alert_id} failed via {delivery.channel}",
                                lambda: self._store.mark_failed(delivery.delivery_id, error))
            return "failed"
        # The last try lands at the end of the window, not a whole backoff after it.
        remaining = self._retry_for - elapsed
        next_at = now + timedelta(seconds=min(self.retry_delay(attempts), remaining))
        await self._durably(f"alert {delivery.alert_id} retry via {delivery.channel}",
                            lambda: self._store.mark_retry(delivery.delivery_id, error, next_at))
        return "retry"


def _multiplier(initial: float) -> dict[str, float]:
    # tenacity 9.2 renamed ``initial`` to ``multiplier`` (and warns on the old name).
    import inspect

    params = inspect.signature(tenacity.wait_exponential_jitter).parameters
    return {"multiplier": initial} if "multiplier" in params else {"initial": initial}
