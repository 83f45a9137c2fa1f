"""The health thread: one worker thread owns the health book and the silent detector.

At 100,000 terminals an evaluation of the :class:`~monitor.health.state.HealthBook`
takes 1–2 s of polars work and silent detection about 1 s; on the event loop, that
stops consumption, delivery and the alert API for as long, every 15 s. Here every
write and every evaluation of terminal health runs on **one thread, in the order it
was submitted**:

* :meth:`HealthWorker.observe` (the batch processor's observer) only enqueues the
  batch's columns that health reads; the book's and the detector's ``observe`` run
  on the thread, so a batch costs the processor microseconds;
* :meth:`HealthWorker.call` runs anything else there (``HealthBook.evaluate``,
  ``apply_status``, ``mark_silent``, ``SilentDetector.evaluate``) and returns an
  awaitable, so a scheduled job awaits its evaluation without holding the loop;
* an evaluation sees exactly the batches submitted before it (first in, first out)
  and nothing of the ones submitted while it runs: the same result as when
  everything ran on the loop, with no lock in the book or the detector (one writer);
* readers (the Prometheus collector on the HTTP server's thread) read the book's
  published result, one immutable reference, never a half-evaluated book.

polars releases the GIL for its heavy work, so the loop keeps running while the
thread computes; it can wait for the GIL up to the interpreter's switch interval
(5 ms) while the thread runs Python code, and as long as one polars call that holds
the GIL (building a frame from Python objects), which the health code keeps short.

Bound: batches waiting for the thread hold memory. Once ``max_pending_events`` events
wait (the default is about 10 s of 25,000 events/s), :meth:`HealthWorker.observe`
blocks its caller until the thread has caught up: the monitor then consumes at
terminal health's pace instead of growing without bound. That only happens when
health falls seconds behind (a 100,000-terminal evaluation takes ~2 s); it is logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

import polars as pl

from monitor.health.terminal_rows import ATTRIBUTES

__all__ = ["DEFAULT_MAX_PENDING_EVENTS", "FrameObserver", "HealthWorker", "HealthWorkerClosed"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Events (rows) that may wait for the health thread before :meth:`HealthWorker.observe`
#: blocks: ~10 s of 25,000 events/s, ~40 MiB of the columns health reads.
DEFAULT_MAX_PENDING_EVENTS: Final = 250_000
#: The batch columns the book and the detector read; the rest of the frame is not kept.
_COLUMNS: Final = ("terminal_id", "occurred_at", "outcome", "latency_ms", "entry_mode", *ATTRIBUTES)


class FrameObserver(Protocol):
    """What follows the batches on the health thread (the book, the detector)."""

    def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None: ...


class HealthWorkerClosed(RuntimeError):
    """The health thread was closed (the monitor is stopping): nothing more runs there."""


class HealthWorker:
    """One thread that runs every write and evaluation of terminal health, in order.

    Args:
        observers: what each batch feeds on the thread, in order (``(book, detector)``);
            one that raises is logged and the others still get the batch.
        max_pending_events: events that may wait before :meth:`observe` blocks.

    Thread-safe: :meth:`observe` and :meth:`call` may be called from any thread.
    """

    def __init__(self, observers: tuple[FrameObserver, ...], *,
                 max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS) -> None:
        if max_pending_events < 1:
            raise ValueError(f"max_pending_events must be >= 1, not {max_pending_events}")
        self.observers = observers
        self.max_pending_events = max_pending_events
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardmon-health")
        self._pending = threading.Condition()  # guards _pending_events and _closed
        self._pending_events = 0  # events submitted to the thread and not observed yet
        self._closed = False
        self._thread_id: int | None = None  # the health thread's ident, once it ran something

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def pending_events(self) -> int:
        """Events submitted and not observed yet."""
        return self._pending_events

    @property
    def thread_id(self) -> int | None:
        """``threading.get_ident()`` of the health thread (``None`` before its first task)."""
        return self._thread_id

    # -- batches ------------------------------------------------------------------------

    def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
        """Hand one classified batch to the health thread (the batch processor's observer).

        Blocks only while ``max_pending_events`` events already wait (see the module
        docstring); after :meth:`close` the batch is dropped.

        Args:
            frame: the classified batch frame; only the columns health reads are kept.
            now: the wall clock that caps event times (default: now, taken here, so a
                batch that waits is capped as if observed at once).
        """
        if frame.height == 0:
            return
        now = now or datetime.now(UTC)
        kept = frame[[c for c in _COLUMNS if c in frame.columns]]  # no copy, no polars plan: shared columns
        events = kept.height
        with self._pending:
            if self._pending_events + events > self.max_pending_events and self._pending_events:
                log.warning("terminal health is %d events behind: waiting for it to catch up",
                            self._pending_events)
                self._pending.wait_for(
                    lambda: self._closed or self._pending_events + events <= self.max_pending_events)
            if self._closed:
                return
            self._pending_events += events
            self._executor.submit(self._observe, kept, now, events)

    def _observe(self, frame: pl.DataFrame, now: datetime, events: int) -> None:
        self._thread_id = threading.get_ident()
        try:
            for observer in self.observers:
                try:
                    observer.observe(frame, now)
                except Exception:  # one view failing must not cost the others their batch
                    log.exception("%s failed on a batch of %d events", type(observer).__name__, events)
        finally:
            with self._pending:
                self._pending_events = max(0, self._pending_events - events)  # 0 after close()
                self._pending.notify_all()

    # -- everything else ----------------------------------------------------------------

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``function(*args)`` on the health thread after everything submitted before.

        Raises:
            HealthWorkerClosed: the worker is closed.
        """
        with self._pending:
            if self._closed:
                raise HealthWorkerClosed("terminal health is stopping")
            return self._executor.submit(self._run, function, *args)

    def _run(self, function: Callable[..., T], *args: Any) -> T:
        self._thread_id = threading.get_ident()
        return function(*args)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the health thread, awaited from the event loop.

        Raises:
            HealthWorkerClosed: the worker is closed, or was closed before this ran.
            Exception: whatever ``function`` raised.
        """
        future = self.submit(function, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.cancelled() and self._closed:  # dropped by close(), not a cancelled caller
                raise HealthWorkerClosed("terminal health stopped before this ran") from None
            raise

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far has run (blocking: tests, benchmarks).

        Returns:
            ``True`` when it has, ``False`` after ``timeout`` seconds.
        """
        try:
            self.submit(lambda: None).result(timeout)
        except TimeoutError:
            return False
        except HealthWorkerClosed:
            pass
        return True

    def close(self, *, wait: bool = True) -> None:
        """Stop taking work; batches not observed yet are dropped, a running task finishes.

        Args:
            wait: block until the running task (if any) has finished and the thread ended.
        """
        with self._pending:
            self._closed = True
            self._pending.notify_all()
        self._executor.shutdown(wait=wait, cancel_futures=True)
        with self._pending:
            self._pending_events = 0
