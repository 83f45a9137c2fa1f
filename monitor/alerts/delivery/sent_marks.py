"""Recording ``sent`` outcomes in group commits: one durable transaction for the marks that wait.

A durable commit costs one fsync (3 ms on this machine's disk; more on a network
disk), and a delivery pass used to commit one per row it sent: 50 rows, 50 fsyncs, while
the rows sent last waited for the others' commits. :class:`SentMarks` keeps the promise
"the commit follows the channel's acceptance at once" and shares the fsync:

* each attempt whose channel accepted calls :meth:`SentMarks.mark` with the time of the
  acceptance (``sent_at``) and waits;
* a writer task takes every mark waiting at that moment and records them in one
  transaction (:meth:`~monitor.alerts.store.AlertStore.mark_many_sent`, through
  :func:`~monitor.alerts.delivery.leases.record_durably`, so a store outage is ridden out
  as for a single mark), then answers each waiter; marks that arrive during that write
  go in the next one.

A mark is never delayed behind a slow send: the writer starts as soon as one mark
waits. What a crash does is unchanged: a row whose mark was not committed is sent again
after its lease (same ``Idempotency-Key`` / ``Message-ID``).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import datetime

from monitor.alerts.delivery.leases import record_durably
from monitor.alerts.store import AlertStore

__all__ = ["SentMarks"]


class SentMarks:
    """Group commit of one pass's ``mark_sent`` calls.

    Args:
        store: the alert store holding the outbox.
        retry_seconds: how long one group's write is retried on transient store errors.
    """

    def __init__(self, store: AlertStore, retry_seconds: float) -> None:
        self._store = store
        self._retry_seconds = retry_seconds
        self._waiting: dict[int, tuple[datetime, asyncio.Future[bool]]] = {}  # <delivery_id: ...>
        self._writer: asyncio.Task[None] | None = None

    async def mark(self, delivery_id: int, at: datetime) -> bool:
        """Record that row ``delivery_id`` was accepted at ``at``; wait for the commit.

        Returns:
            ``True`` if the row was pending and is now ``sent``, ``False`` if it was not
            pending (marked by someone else meanwhile).

        Raises:
            Exception: the group's write failed for good (permanent error, or transient
                for longer than ``retry_seconds``); the row stays pending and is sent
                again after its lease.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[delivery_id] = (at, future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="cardmon-delivery-marks")
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Stop the writer (end of the pass); waiters still waiting get ``CancelledError``."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer
        for _, future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, {}
            sent = {delivery_id: at for delivery_id, (at, _) in group.items()}
            try:
                marked = await record_durably(
                    f"{len(sent)} delivery outcome(s) (sent)",
                    lambda sent=sent: self._store.mark_many_sent(sent),  # type: ignore[misc]
                    self._retry_seconds)
            except asyncio.CancelledError:
                for _, future in group.values():
                    future.cancel()
                raise
            except Exception as error:  # noqa: BLE001 -- handed to each waiter
                for _, future in group.values():
                    if not future.done():
                        future.set_exception(error)
                continue
            for delivery_id, (_, future) in group.items():
                if not future.done():
                    future.set_result(delivery_id in marked)
