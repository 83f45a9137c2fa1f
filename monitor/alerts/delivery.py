"""The delivery worker: sends what the outbox holds, with retries that survive restarts.

One pass (:meth:`DeliveryWorker.deliver_due`), step by step:

1. claim the pending outbox rows that are due (the store leases them, so a
   concurrent pass cannot send them too);
2. for each, load the alert and its events *now* (so events added since the alert
   was raised are in the message), render it and send it through its channel,
   bounded by ``send_timeout`` seconds;
3. accepted → ``mark_sent``; refused, with attempts left → ``mark_retry`` with the
   next attempt time from ``tenacity``'s exponential backoff with jitter; refused
   on the last attempt → ``mark_failed`` (the row and its last error stay).

The retry schedule lives in the outbox, so a restart resumes it. Delivery is
at-least-once: a crash between a channel's acceptance and ``mark_sent`` resends
after the lease, with the same ``Idempotency-Key`` / ``Message-ID``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import tenacity

from monitor.alerts.channels import Channel
from monitor.alerts.model import Delivery
from monitor.alerts.render import render
from monitor.alerts.store import AlertStore

__all__ = ["DeliveryResult", "DeliveryWorker", "ResultCallback"]

log = logging.getLogger(__name__)

#: What one attempt came to (the ``status`` label of ``cardmon_alerts_total``).
DeliveryResult = Literal["sent", "retry", "failed"]
#: ``on_result(channel, status, seconds)``: called once per attempt; ``seconds`` is
#: how long the attempt took.
ResultCallback = Callable[[str, DeliveryResult, float], None]

# Rows claimed per pass; a full batch means more may be due, so the next pass starts at once.
_BATCH_SIZE: Final = 50


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
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
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
        # The lease outlives any send, so a claimed row is never sent twice concurrently.
        self._lease_seconds = max(60.0, 2 * send_timeout)
        self._default_timezone = default_timezone
        self._on_result = on_result

    def __repr__(self) -> str:
        return (
            f"DeliveryWorker(channels={sorted(self._channels)}, "
            f"max_attempts={self._max_attempts})"
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (exponential, jittered)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempts
        return float(self._wait(state))

    async def run(self, stop_event: asyncio.Event) -> None:
        """Deliver until ``stop_event`` is set; a failing pass is logged, never fatal."""
        while not stop_event.is_set():
            try:
                claimed, _ = await self._pass()
            except Exception:
                log.exception("delivery pass failed; retrying after the poll interval")
                claimed = 0
            if claimed >= _BATCH_SIZE:
                continue
            # Sleep until the poll interval ends, the store has news (wake) or we must stop.
            waits = [asyncio.ensure_future(stop_event.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, timeout=self._poll_interval,
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
        due = await asyncio.to_thread(
            self._store.claim_due, datetime.now(UTC), _BATCH_SIZE,
            lease_seconds=self._lease_seconds,
        )
        results = await asyncio.gather(*(self._attempt(delivery) for delivery in due))
        return len(due), results.count("sent")

    async def _attempt(self, delivery: Delivery) -> DeliveryResult:
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._send(delivery), timeout=self._send_timeout)
        # Any error of any channel is recorded on the row and retried, never lost.
        except Exception as error:  # noqa: BLE001
            status = await self._record_failure(delivery, _describe(error))
        else:
            await asyncio.to_thread(self._store.mark_sent, delivery.delivery_id, datetime.now(UTC))
            status = "sent"
        elapsed = time.monotonic() - started
        log.info(
            "alert %s via %s: %s (attempt %d, %.3f s)",
            delivery.alert_id, delivery.channel, status, delivery.attempts + 1, elapsed,
        )
        if self._on_result is not None:
            self._on_result(delivery.channel, status, elapsed)
        return status

    async def _send(self, delivery: Delivery) -> None:
        channel = self._channels.get(delivery.channel)
        if channel is None:
            raise LookupError(f"no channel named {delivery.channel!r} is configured")
        alert = await asyncio.to_thread(self._store.get_alert, delivery.alert_id)
        events = await asyncio.to_thread(self._store.alert_events, delivery.alert_id)
        if alert is None:
            raise LookupError(f"alert {delivery.alert_id} is not in the store")
        message = render(
            alert, events, manager_timezone=alert.manager.timezone or self._default_timezone
        ).for_channel(delivery.channel)
        await channel.send(message)

    async def _record_failure(self, delivery: Delivery, error: str) -> DeliveryResult:
        attempts = delivery.attempts + 1
        if attempts >= self._max_attempts:
            await asyncio.to_thread(self._store.mark_failed, delivery.delivery_id, error)
            return "failed"
        next_at = datetime.now(UTC) + timedelta(seconds=self.retry_delay(attempts))
        await asyncio.to_thread(self._store.mark_retry, delivery.delivery_id, error, next_at)
        return "retry"


def _describe(error: Exception) -> str:
    # "TimeoutError" alone says more than "TimeoutError: " (its text is often empty).
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _multiplier(initial: float) -> dict[str, float]:
    # tenacity 9.2 renamed ``initial`` to ``multiplier`` (and warns on the old name).
    import inspect

    params = inspect.signature(tenacity.wait_exponential_jitter).parameters
    return {"multiplier": initial} if "multiplier" in params else {"initial": initial}
